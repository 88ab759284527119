// Package ctl implements airlockctl, the command-line client of the issuer
// and the gateway, on top of package client. Its command line (commands,
// flags, AIRLOCK_* variables, output and exit codes) is a contract used by
// the Makefile, the README and the compose suite.
//
// Exit codes: 0 success, 1 a failed call or operation, 2 a usage error.
// Errors are printed to stderr as "airlockctl: <code>: <message>". The
// personal access token and model API keys are never printed.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"

	"github.com/airlock-dev/airlock/pkg/client"
)

// IO is what a run of airlockctl reads and writes; tests replace all of it.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv looks up an environment variable (os.LookupEnv).
	Getenv func(string) (string, bool)
}

// Main runs airlockctl with the process's arguments (without the program
// name), standard streams and environment, cancelling on SIGINT/SIGTERM,
// and returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.LookupEnv})
}

// command is one airlockctl command. setup registers its flags on fs and
// returns the function that runs it once flags are parsed.
type command struct {
	name     string // one or two words: "complete", "token mint"
	synopsis string
	setup    func(c *cli, fs *flag.FlagSet) func(ctx context.Context) error
}

// commands lists every command, in help order.
func commands() []command {
	return []command{
		{"token mint", "[--features a,b] [--ttl 1h] [--format token|json|env]", tokenMint},
		{"token revoke", "--jti JTI", tokenRevoke},
		{"complete", "--feature F [--prompt TEXT | stdin] [--max-tokens N] [--jwt TOKEN] [--unary]", complete},
		{"model create", "--name N --family F --provider P --endpoint URL --identifier ID [--api-key-file F] [--trusted-network CIDR]... [--fallback M] [--api-version V (azure_openai)] [--json]", modelCreate},
		{"model update", "--name N [any flag of create: only the fields given change; --fallback \"\" removes the fallback] [--clear-api-key] [--json]", modelUpdate},
		{"model get", "--name N [--json]", modelGet},
		{"model list", "[--json]", modelList},
		{"model delete", "--name N", modelDelete},
		{"feature set", "--feature F (--model M | --disabled) [--json]", featureSet},
		{"feature list", "[--json]", featureList},
		{"keys get", "[--jwks] [--json]", keysGet},
		{"keys rotate", "[--json]", keysRotate},
		{"user create", "--username U --role user|admin|gateway --features a,b [--json]", userCreate},
		{"user list", "[--json]", userList},
		{"pat create", "--username U [--expires 720h] [--out FILE [--force]]", patCreate},
		{"pat revoke", "--id ID", patRevoke},
		{"healthcheck", "[--addr ADDR] [--service NAME]", healthcheck},
		{"cert ca", "--out DIR [--validity 8760h]", certCA},
		{"cert issue", "--ca-dir DIR --name NAME [--dns a,b] [--ip 127.0.0.1] --out DIR [--validity 2160h]", certIssue},
	}
}

// Run runs airlockctl with args and returns the exit code.
func Run(ctx context.Context, args []string, stdio IO) int {
	c := &cli{io: stdio}
	err := c.run(ctx, args)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stdio.Stderr, "airlockctl: %s: %s\n", codes.InvalidArgument, ue.msg)
		if ue.synopsis != "" {
			fmt.Fprintf(stdio.Stderr, "usage: airlockctl %s\n", ue.synopsis)
		} else {
			fmt.Fprintln(stdio.Stderr, "run 'airlockctl help' for usage")
		}
		return 2
	}
	fmt.Fprintf(stdio.Stderr, "airlockctl: %s\n", client.FromError(err))
	return 1
}

// usageError is a command line that cannot be run: exit code 2.
type usageError struct {
	msg      string
	synopsis string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func (c *cli) run(ctx context.Context, args []string) error {
	runCmd, synopsis, err := c.parse(args)
	if err != nil || runCmd == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	defer c.close()
	err = runCmd(ctx)
	var ue *usageError
	if errors.As(err, &ue) && ue.synopsis == "" {
		ue.synopsis = synopsis
	}
	return err
}

// parse reads the global flags, the command and its flags, then the
// environment for globals not given, and returns the command ready to run
// (nil after help).
func (c *cli) parse(args []string) (func(context.Context) error, string, error) {
	gfs := newFlagSet("airlockctl")
	c.g.register(gfs)
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.help()
		}
		return nil, "", flagError(err, "[global flags] <command> [flags]")
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		return nil, "", usagef("no command given")
	}
	if rest[0] == "help" {
		c.help()
		return nil, "", nil
	}
	cmd, n := lookup(rest)
	if cmd == nil {
		return nil, "", usagef("unknown command %q", strings.Join(rest[:min(2, len(rest))], " "))
	}
	synopsis := cmd.name + " " + cmd.synopsis
	usage := func(err error) error { return &usageError{msg: err.Error(), synopsis: synopsis} }

	// Global flags may also follow the command; they are parsed into a
	// scratch copy and copied over, so the command's flag set never resets
	// values already parsed.
	fs := newFlagSet("airlockctl " + cmd.name)
	var scratch globals
	scratch.register(fs)
	runCmd := cmd.setup(c, fs)
	if err := fs.Parse(rest[n:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.io.Stdout, "usage: airlockctl %s\n\nflags:\n", synopsis)
			fs.SetOutput(c.io.Stdout)
			fs.PrintDefaults()
		}
		return nil, "", flagError(err, synopsis)
	}
	if fs.NArg() > 0 {
		return nil, "", usage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	var copyErr error
	fs.Visit(func(f *flag.Flag) {
		if gfs.Lookup(f.Name) != nil && copyErr == nil {
			copyErr = gfs.Set(f.Name, f.Value.String())
		}
	})
	if copyErr != nil {
		return nil, "", usage(copyErr)
	}
	if err := c.g.applyEnv(gfs, c.io.Getenv); err != nil {
		return nil, "", usage(err)
	}
	if err := c.g.validate(); err != nil {
		return nil, "", usage(err)
	}
	return runCmd, synopsis, nil
}

// lookup finds the command named by the first one or two words of args.
func lookup(args []string) (*command, int) {
	cmds := commands()
	if len(args) >= 2 {
		for i := range cmds {
			if cmds[i].name == args[0]+" "+args[1] {
				return &cmds[i], 2
			}
		}
	}
	for i := range cmds {
		if cmds[i].name == args[0] {
			return &cmds[i], 1
		}
	}
	return nil, 0
}

func (c *cli) help() {
	w := c.io.Stdout
	fmt.Fprint(w, `usage: airlockctl [global flags] <command> [flags]

global flags (also accepted after the command):
  --issuer ADDR       issuer gRPC address (env AIRLOCK_ISSUER_ADDR, default 127.0.0.1:9440)
  --gateway ADDR      gateway gRPC address (env AIRLOCK_GATEWAY_ADDR, default 127.0.0.1:9450)
  --token-file PATH   file holding the personal access token (env AIRLOCK_TOKEN_FILE; or env AIRLOCK_TOKEN)
  --plaintext         no TLS, for loopback development servers (env AIRLOCK_PLAINTEXT=true)
  --ca FILE --cert FILE --key FILE
                      TLS trust and mutual-TLS client certificate (env AIRLOCK_CA, AIRLOCK_CERT, AIRLOCK_KEY)
  --timeout 30s       deadline of the whole command (env AIRLOCK_TIMEOUT)

commands:
`)
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %s %s\n", cmd.name, cmd.synopsis)
	}
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by Run
	return fs
}

func flagError(err error, synopsis string) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &usageError{msg: err.Error(), synopsis: synopsis}
}

// stringList is a flag that may be repeated and takes comma-separated
// values; empty items are dropped.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
