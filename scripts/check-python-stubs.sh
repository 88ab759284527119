#!/bin/sh
# Checks that the committed Python stubs (python/airlock_client/gen) are what
# `buf generate --template buf.gen.python.yaml` makes from proto/ with
# Debian's protoc and grpc_python_plugin (python/install-deps.sh installs
# them). Without those plugins the check fails under CI and is reported as
# not run elsewhere. Usage: check-python-stubs.sh PATH-TO-BUF
set -eu
buf=$1
out=python/airlock_client/gen
if ! command -v protoc >/dev/null 2>&1 || ! command -v grpc_python_plugin >/dev/null 2>&1; then
	if [ -n "${CI:-}" ]; then
		echo "python stubs: protoc or grpc_python_plugin missing (python/install-deps.sh installs them)"
		exit 1
	fi
	echo "python stubs: NOT CHECKED: protoc or grpc_python_plugin missing (python/install-deps.sh installs them)"
	exit 0
fi
"$buf" generate --template buf.gen.python.yaml
git diff --exit-code -- "$out" || {
	echo "python stubs are stale: run '$buf generate --template buf.gen.python.yaml' and commit"
	exit 1
}
if [ -n "$(git status --porcelain -- "$out")" ]; then
	git status --porcelain -- "$out"
	echo "untracked python stubs"
	exit 1
fi
echo "python stubs: fresh"
