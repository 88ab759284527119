// Command issuer mints the self-issued tokens Airlock's gateway verifies and
// holds the model configuration. See issuer/app for flags.
package main

import (
	"os"

	"github.com/airlock-dev/airlock/issuer/app"
)

func main() { os.Exit(app.Main(os.Args[1:], os.Stderr)) }
