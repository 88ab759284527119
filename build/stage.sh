#!/usr/bin/env bash
# Builds static Airlock binaries into dist/ and stages the image build
# context in dist/image: the binaries, the host CA bundle and an empty
# directory that becomes the issuer's /data. Nothing is downloaded here
# beyond Go modules already pinned in go.sum.
#
# usage: build/stage.sh [name...]   (default: issuer gateway stubmodel airlockctl)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
	names=(issuer gateway stubmodel airlockctl)
fi

ca_bundle=${AIRLOCK_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [[ ! -s $ca_bundle ]]; then
	echo "stage: CA bundle $ca_bundle missing (install ca-certificates or set AIRLOCK_CA_BUNDLE)" >&2
	exit 1
fi

mkdir -p dist/image/empty
for name in "${names[@]}"; do
	# Static, reproducible, stripped: the image has no libc to link against.
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "dist/$name" "./cmd/$name"
	cp "dist/$name" "dist/image/$name"
done
cp "$ca_bundle" dist/image/ca-certificates.crt
