#!/usr/bin/env bash
# Runs Docker Compose with Airlock's docker-compose.yml: `docker compose`
# (v2) when it works, otherwise the standalone `docker-compose` (1.29 on
# Debian). Every script and Make target goes through here so both work.
#
# usage: scripts/compose.sh [compose args...]     e.g. scripts/compose.sh ps
#        scripts/compose.sh --which               prints the command it would use
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

compose=()
if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
	compose=(docker-compose)
else
	echo "compose.sh: neither 'docker compose' nor 'docker-compose' works; install one of them" >&2
	exit 127
fi

if [[ ${1:-} == --which ]]; then
	echo "${compose[*]}"
	exit 0
fi

# --project-directory keeps relative paths in the file anchored at the
# repository whatever the caller's working directory.
exec "${compose[@]}" --project-directory "$root" -f "$root/docker-compose.yml" "$@"
