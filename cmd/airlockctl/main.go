// Command airlockctl is the command-line client of the Airlock issuer and
// gateway; see internal/ctl.
package main

import (
	"os"

	"github.com/airlock-dev/airlock/internal/ctl"
)

func main() { os.Exit(ctl.Main(os.Args[1:])) }
