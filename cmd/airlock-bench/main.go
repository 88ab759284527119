// Command airlock-bench is Airlock's performance suite and load generator
// (`make bench`). See bench/suite for flags and scenarios.
package main

import (
	"os"

	"github.com/airlock-dev/airlock/bench/suite"
)

func main() { os.Exit(suite.Main(os.Args[1:])) }
