#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZ_TIME (default 10s).
# A target that finds a failing input fails the run: Go writes the input to
# the package's testdata/fuzz/<Target>/, where it becomes a regression seed
# once committed, and the output is printed. A run that fails without
# writing an input is a failure of the fuzzing engine itself (a worker that
# hung or was killed on a loaded machine, or Go's own "context deadline
# exceeded" when the fuzz time ends mid-step), not of the code: it is printed
# and the target is run again, up to three times in all; a third such
# failure fails the run.
set -euo pipefail
GO=${GO:-go}
FUZZ_TIME=${FUZZ_TIME:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# count prints how many inputs the corpus directory holds (0 if none).
count() {
	if [[ -d $1 ]]; then find "$1" -type f | wc -l; else echo 0; fi
}

for pkg in $($GO list ./...); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		for attempt in 1 2 3; do
			echo "fuzz $pkg $f ($FUZZ_TIME)"
			corpus="$dir/testdata/fuzz/$f"
			before=$(count "$corpus")
			if $GO test -run='^$' -fuzz="^$f\$" -fuzztime="$FUZZ_TIME" "$pkg" >"$log" 2>&1; then
				break
			fi
			tail -n 40 "$log"
			after=$(count "$corpus")
			if ((after > before)); then
				echo "FAIL fuzz $pkg $f: failing input written to $corpus"
				exit 1
			fi
			if ((attempt == 3)); then
				echo "FAIL fuzz $pkg $f: the fuzzing engine failed three times without a failing input"
				exit 1
			fi
			echo "fuzz $pkg $f: the fuzzing engine failed without a failing input; running it again"
		done
	done
done
