#!/bin/sh
# Installs what the Python client, its stub generation and its tests need,
# from Debian only (air-gapped friendly: no pip). Idempotent: packages
# already installed are left alone, and apt is not touched at all then.
#   protobuf-compiler       protoc, whose built-in python/pyi generators buf calls
#   protobuf-compiler-grpc  grpc_python_plugin (the service stubs)
#   python3-protobuf        the runtime of the generated messages (same version as protoc)
#   python3-grpcio          the gRPC runtime
set -eu
PKGS="protobuf-compiler protobuf-compiler-grpc python3-protobuf python3-grpcio"
missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "python deps: all installed"
	exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
echo "python deps: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
