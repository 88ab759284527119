package ctl

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Defaults of the global flags.
const (
	defaultIssuer  = client.DefaultIssuerAddr
	defaultGateway = client.DefaultGatewayAddr
	defaultTimeout = 30 * time.Second
	// maxSecretFile bounds token and API key files: a secret is a line,
	// and a mistyped path to a large file must not be read into memory.
	maxSecretFile = 64 << 10
)

// envPAT holds the personal access token itself (not a path).
const envPAT = client.EnvToken

// globals are the flags every command accepts.
type globals struct {
	issuer, gateway string
	tokenFile       string
	plaintext       bool
	ca, cert, key   string
	timeout         time.Duration
}

// globalEnv maps each global flag to its environment variable.
// The names are pkg/client's, so the SDK's OptionsFromEnv reads the same.
var globalEnv = map[string]string{
	"issuer":     client.EnvIssuerAddr,
	"gateway":    client.EnvGatewayAddr,
	"token-file": client.EnvTokenFile,
	"plaintext":  client.EnvPlaintext,
	"ca":         client.EnvCA,
	"cert":       client.EnvCert,
	"key":        client.EnvKey,
	"timeout":    "AIRLOCK_TIMEOUT",
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.issuer, "issuer", defaultIssuer, "issuer gRPC address (env AIRLOCK_ISSUER_ADDR)")
	fs.StringVar(&g.gateway, "gateway", defaultGateway, "gateway gRPC address (env AIRLOCK_GATEWAY_ADDR)")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the personal access token (env AIRLOCK_TOKEN_FILE; or the token in env AIRLOCK_TOKEN)")
	fs.BoolVar(&g.plaintext, "plaintext", false, "connect without TLS, for loopback development servers (env AIRLOCK_PLAINTEXT)")
	fs.StringVar(&g.ca, "ca", "", "CA bundle that verifies the servers; default the system roots (env AIRLOCK_CA)")
	fs.StringVar(&g.cert, "cert", "", "client certificate for mutual TLS (env AIRLOCK_CERT)")
	fs.StringVar(&g.key, "key", "", "client certificate key for mutual TLS (env AIRLOCK_KEY)")
	fs.DurationVar(&g.timeout, "timeout", defaultTimeout, "deadline of the whole command (env AIRLOCK_TIMEOUT)")
}

// applyEnv sets every global flag not given on the command line from its
// environment variable, naming the variable in any error.
func (g *globals) applyEnv(fs *flag.FlagSet, getenv func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, env := range globalEnv {
		if set[name] {
			continue
		}
		if v, ok := getenv(env); ok && v != "" {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("env %s: invalid value %q: %v", env, v, err)
			}
		}
	}
	return nil
}

func (g *globals) validate() error {
	switch {
	case g.plaintext && (g.ca != "" || g.cert != "" || g.key != ""):
		return errors.New("--plaintext conflicts with --ca/--cert/--key")
	case (g.cert == "") != (g.key == ""):
		return errors.New("--cert and --key must be given together")
	case g.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

// cli is one run: its IO, globals and the connections it opened.
type cli struct {
	io      IO
	g       globals
	closers []func()
}

func (c *cli) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// transport returns the transport credentials and the per-RPC credentials
// options the globals ask for. Plaintext to a non-loopback address is
// allowed (the user asked) but warned about, since secrets travel in clear.
func (c *cli) transport(addr string) (credentials.TransportCredentials, []client.CredentialsOption, error) {
	if c.g.plaintext {
		if !isLoopback(addr) {
			fmt.Fprintf(c.io.Stderr, "airlockctl: warning: --plaintext to non-loopback %s sends credentials in clear\n", addr)
		}
		return insecure.NewCredentials(), []client.CredentialsOption{client.AllowInsecure()}, nil
	}
	conf, err := tlsconfig.Client(c.g.ca, c.g.cert, c.g.key, "")
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	return credentials.NewTLS(conf), nil, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dial opens a connection to addr with per-RPC credentials built by creds
// from the transport's options; it is closed when the run ends. The
// issuer's address may name several replicas (client.IssuerTarget).
func (c *cli) dial(addr string, creds func(...client.CredentialsOption) credentials.PerRPCCredentials) (*grpc.ClientConn, error) {
	tc, copts, err := c.transport(addr)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tc)}
	if creds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(creds(copts...)))
	}
	target := addr
	if addr == c.g.issuer {
		var topts []grpc.DialOption
		if target, topts, err = client.IssuerTarget(addr); err != nil {
			return nil, usagef("%v", err)
		}
		opts = append(opts, topts...)
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, usagef("address %q: %v", addr, err)
	}
	c.closers = append(c.closers, func() { _ = cc.Close() })
	return cc, nil
}

// issuerConn dials the issuer authenticated with the personal access token.
func (c *cli) issuerConn() (*grpc.ClientConn, error) {
	pat, err := c.pat()
	if err != nil {
		return nil, err
	}
	return c.dial(c.g.issuer, func(o ...client.CredentialsOption) credentials.PerRPCCredentials {
		return client.PATCredentials(pat, o...)
	})
}

// pat returns the personal access token from --token-file, else from
// AIRLOCK_TOKEN. A missing token is a usage error.
func (c *cli) pat() (string, error) {
	if c.g.tokenFile != "" {
		return readSecretFile(c.g.tokenFile, "token file")
	}
	if v, ok := c.io.Getenv(envPAT); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), nil
	}
	return "", usagef("no personal access token: give --token-file or set %s", envPAT)
}

// readSecretFile reads a one-line secret. Errors name the file but never
// its content.
func readSecretFile(path, what string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", usagef("read %s: %v", what, err)
	}
	defer func() { _ = f.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", usagef("read %s %s: %v", what, path, err)
	}
	if len(b) > maxSecretFile {
		return "", usagef("%s %s is larger than %d bytes", what, path, maxSecretFile)
	}
	s := string(bytes.TrimSpace(b))
	if s == "" {
		return "", usagef("%s %s is empty", what, path)
	}
	return s, nil
}
