// Command airlock-bench is Airlock's performance suite and load generator
// (`make bench`; see bench/suite for flags and scenarios) and, as
// `airlock-bench loadtest`, the bounded load test (`make loadtest`; see
// bench/loadtest).
package main

import (
	"os"

	"github.com/airlock-dev/airlock/bench/suite"
)

func main() { os.Exit(suite.Main(os.Args[1:])) }
