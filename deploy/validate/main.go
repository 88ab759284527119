package main

import (
	"fmt"
	"os"
)

func main() {
	dir := "../k8s"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	findings, err := ValidateDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(2)
	}
	for _, f := range findings {
		fmt.Println(f)
	}
	if len(findings) > 0 {
		fmt.Printf("%d problems in %s\n", len(findings), dir)
		os.Exit(1)
	}
	fmt.Printf("%s: all manifests valid\n", dir)
}
