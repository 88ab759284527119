// Command gateway is Airlock's AI gateway: it verifies issuer-minted tokens
// and streams completions from the configured model servers.
package main

import (
	"os"

	"github.com/airlock-dev/airlock/gateway/app"
)

func main() { os.Exit(app.Main(os.Args[1:], os.Stderr)) }
