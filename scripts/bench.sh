#!/usr/bin/env bash
# Airlock performance suite (make bench): builds the binaries, runs the
# in-process verification benchmarks with -count and benchstat, then drives
# the real binaries on loopback with cmd/airlock-bench, which prints every
# figure next to its target and writes BENCHMARKS.md.
#
# Environment: BENCH_COUNT (default 5), BENCH_RUNS (default 3),
# BENCH_ARGS (extra airlock-bench flags, e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin
COUNT=${BENCH_COUNT:-5}
RUNS=${BENCH_RUNS:-3}
BENCHSTAT_VERSION=${BENCHSTAT_VERSION:-v0.0.0-20260908200009-22c9c6c9d4da}

# 5,000 streams need ~10,000 descriptors in the gateway (clients + upstream).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
if [ "$(ulimit -n)" -lt 12000 ]; then
  echo "bench: open-file limit $(ulimit -n) is below 12000; the scale scenario may fail" >&2
fi

# The wire scenario compares the gateway with nginx as a plain reverse proxy
# (run by the suite as its own process on a loopback port, never the system
# service): install the Debian package when it is missing.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "bench: installing nginx (peer proxy for the wire scenario)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >/dev/null ||
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null ||
    echo "bench: could not install nginx; the wire scenario will fail" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ ! -x "$BIN/benchstat" ]; then
  GOBIN=$BIN go install "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION"
fi

echo "bench: building binaries"
go build -o "$BIN/" ./cmd/issuer ./cmd/gateway ./cmd/stubmodel ./cmd/airlock-bench

VERIFY_CMD="go test -run '^\$' -bench . -benchmem -count $COUNT ./bench/verify ./gateway/auth"
echo "bench: $VERIFY_CMD"
go test -run '^$' -bench . -benchmem -count "$COUNT" ./bench/verify ./gateway/auth | tee "$WORK/verify.txt" | grep -E '^Benchmark' || true
"$BIN/benchstat" "$WORK/verify.txt" > "$WORK/verify.benchstat"

RUN_CMD="bin/airlock-bench --bin-dir bin --runs $RUNS --verify-raw verify.txt --verify-benchstat verify.benchstat --out BENCHMARKS.md ${BENCH_ARGS:-}"
cat > "$WORK/commands.txt" <<CMDS
$VERIFY_CMD > verify.txt
bin/benchstat verify.txt > verify.benchstat
$RUN_CMD
CMDS
echo "bench: $RUN_CMD"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
status=0
"$BIN/airlock-bench" --bin-dir "$BIN" --runs "$RUNS" --work-dir "$WORK/run" \
  --verify-raw "$WORK/verify.txt" --verify-benchstat "$WORK/verify.benchstat" \
  --commands "$WORK/commands.txt" --findings bench/findings.md --out BENCHMARKS.md ${BENCH_ARGS:-} || status=$?

# Keep the raw profiles (the work directory is removed on exit).
if compgen -G "$WORK/run/profile/*.pb.gz" >/dev/null; then
  mkdir -p "$BIN/profiles" && cp "$WORK"/run/profile/*.pb.gz "$BIN/profiles/"
  echo "bench: profiles copied to bin/profiles (go tool pprof bin/profiles/gateway-cpu.pb.gz)"
fi
exit $status
