// Command airlock-load runs the bounded load test (package loadtest)
// against the built binaries on loopback.
package main

import (
	"os"

	"github.com/airlock-dev/airlock/loadtest"
)

func main() { os.Exit(loadtest.Main(os.Args[1:], os.Stdout, os.Stderr)) }
