// Command stubmodel is a deterministic OpenAI-compatible model server for
// demos, tests and benchmarks (a test double, not a model).
package main

import (
	"os"

	"github.com/airlock-dev/airlock/internal/testkit/stubmodel"
)

func main() { os.Exit(stubmodel.Main(os.Args[1:], os.Stderr)) }
