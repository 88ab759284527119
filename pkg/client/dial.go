package client

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// The loopback addresses of `make run` and of the services' defaults.
const (
	DefaultIssuerAddr  = "127.0.0.1:9440"
	DefaultGatewayAddr = "127.0.0.1:9450"
)

// The environment variables OptionsFromEnv reads; airlockctl reads the
// same ones for its global flags.
const (
	EnvIssuerAddr  = "AIRLOCK_ISSUER_ADDR"
	EnvGatewayAddr = "AIRLOCK_GATEWAY_ADDR"
	EnvTokenFile   = "AIRLOCK_TOKEN_FILE" // file holding the personal access token
	EnvToken       = "AIRLOCK_TOKEN"      // the personal access token itself
	EnvPlaintext   = "AIRLOCK_PLAINTEXT"
	EnvCA          = "AIRLOCK_CA"
	EnvCert        = "AIRLOCK_CERT"
	EnvKey         = "AIRLOCK_KEY"
)

// maxPATFile bounds a token file: a token is a line, and a mistyped path
// to a large file must not be read into memory.
const maxPATFile = 64 << 10

// Options says how Dial reaches Airlock. The zero value dials the loopback
// defaults over TLS trusting the system roots, which needs a PAT.
type Options struct {
	// IssuerAddr and GatewayAddr are host:port (default DefaultIssuerAddr,
	// DefaultGatewayAddr). IssuerAddr may also name several issuer
	// replicas: "host1:port,host2:port" or "dns:///name:port" (see
	// IssuerTarget); calls safe to repeat are then retried on another
	// replica (IssuerServiceConfig).
	IssuerAddr, GatewayAddr string
	// Plaintext connects without TLS, as `make run` serves. Only for
	// loopback development servers: the PAT and tokens travel in clear.
	Plaintext bool
	// CAFile verifies the servers (default: the system roots); CertFile
	// and KeyFile are a client certificate for mutual TLS, given together.
	CAFile, CertFile, KeyFile string
	// PAT is the personal access token, or PATFile the file holding it
	// (one of them is required).
	PAT, PATFile string
	// Features the minted tokens carry (default: every feature the user
	// is entitled to) and their lifetime (default: the issuer's).
	Features []string
	TTL      time.Duration
}

// OptionsFromEnv returns the Options that airlockctl's environment
// variables describe (EnvIssuerAddr ... EnvKey); getenv is os.LookupEnv or
// a test's map. An unset variable leaves the zero value; a malformed
// AIRLOCK_PLAINTEXT is an InvalidArgument *Error naming the variable.
func OptionsFromEnv(getenv func(string) (string, bool)) (Options, error) {
	get := func(k string) string {
		v, _ := getenv(k)
		return strings.TrimSpace(v)
	}
	o := Options{
		IssuerAddr: get(EnvIssuerAddr), GatewayAddr: get(EnvGatewayAddr),
		CAFile: get(EnvCA), CertFile: get(EnvCert), KeyFile: get(EnvKey),
		PATFile: get(EnvTokenFile),
	}
	if o.PATFile == "" {
		o.PAT = get(EnvToken)
	}
	if v := get(EnvPlaintext); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Options{}, newError(codes.InvalidArgument, "env %s: %q is not a boolean (true or false)", EnvPlaintext, v)
		}
		o.Plaintext = b
	}
	return o, nil
}

// Conn is Airlock dialled: a PAT-authenticated connection to the issuer, a
// TokenSource minting over it, and a connection to the gateway that sends
// the current token with every call. Its Client methods call the gateway.
// Close releases everything.
type Conn struct {
	*Client
	// Issuer carries the PAT: use it for the issuer's services
	// (issuerv1.NewModelServiceClient(conn.Issuer), ...).
	Issuer *grpc.ClientConn
	// Gateway carries the minted token and its x-gitlab-* metadata.
	Gateway *grpc.ClientConn
	// Tokens mints and refreshes the gateway's token.
	Tokens *TokenSource
}

// Dial connects to the issuer and the gateway as o says. Connections are
// made lazily, so an unreachable server shows in the first call's error
// (Unavailable, with a hint when TLS and plaintext are mixed up). Dial's
// own errors are InvalidArgument *Errors: no PAT, an unreadable token,
// CA, certificate or key file, a certificate without its key, Plaintext
// together with TLS files.
func Dial(o Options) (*Conn, error) {
	if o.IssuerAddr == "" {
		o.IssuerAddr = DefaultIssuerAddr
	}
	if o.GatewayAddr == "" {
		o.GatewayAddr = DefaultGatewayAddr
	}
	pat, err := o.pat()
	if err != nil {
		return nil, err
	}
	tc, copts, err := o.transport()
	if err != nil {
		return nil, err
	}
	target, iopts, err := IssuerTarget(o.IssuerAddr)
	if err != nil {
		return nil, newError(codes.InvalidArgument, "%v", err)
	}
	ic, err := grpc.NewClient(target, append(iopts, grpc.WithTransportCredentials(tc), grpc.WithPerRPCCredentials(PATCredentials(pat, copts...)))...)
	if err != nil {
		return nil, newError(codes.InvalidArgument, "issuer address %q: %v", o.IssuerAddr, err)
	}
	var topts []TokenSourceOption
	if len(o.Features) > 0 {
		topts = append(topts, WithFeatures(o.Features...))
	}
	if o.TTL > 0 {
		topts = append(topts, WithTTL(o.TTL))
	}
	ts := NewTokenSource(issuerv1.NewTokenServiceClient(ic), topts...)
	gc, err := grpc.NewClient(o.GatewayAddr, grpc.WithTransportCredentials(tc), grpc.WithPerRPCCredentials(NewPerRPCCredentials(ts, copts...)))
	if err != nil {
		_ = ts.Close()
		_ = ic.Close()
		return nil, newError(codes.InvalidArgument, "gateway address %q: %v", o.GatewayAddr, err)
	}
	return &Conn{Client: New(gc), Issuer: ic, Gateway: gc, Tokens: ts}, nil
}

// Close stops the token source and closes both connections.
func (c *Conn) Close() error {
	return errors.Join(c.Tokens.Close(), c.Gateway.Close(), c.Issuer.Close())
}

func (o Options) pat() (string, error) {
	switch {
	case o.PAT != "" && o.PATFile != "":
		return "", newError(codes.InvalidArgument, "give a personal access token or a token file, not both")
	case o.PAT != "":
		return strings.TrimSpace(o.PAT), nil
	case o.PATFile == "":
		return "", newError(codes.InvalidArgument, "no personal access token: set Options.PAT or PATFile (env %s or %s)", EnvTokenFile, EnvToken)
	}
	f, err := os.Open(o.PATFile)
	if err != nil {
		return "", newError(codes.InvalidArgument, "token file: %v", err)
	}
	defer func() { _ = f.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(f, maxPATFile+1))
	switch {
	case err != nil:
		return "", newError(codes.InvalidArgument, "token file %s: %v", o.PATFile, err)
	case len(b) > maxPATFile:
		return "", newError(codes.InvalidArgument, "token file %s is larger than %d bytes", o.PATFile, maxPATFile)
	}
	pat := string(bytes.TrimSpace(b))
	if pat == "" {
		return "", newError(codes.InvalidArgument, "token file %s is empty", o.PATFile)
	}
	return pat, nil
}

func (o Options) transport() (credentials.TransportCredentials, []CredentialsOption, error) {
	if o.Plaintext {
		if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
			return nil, nil, newError(codes.InvalidArgument, "Plaintext conflicts with the TLS files (CA, certificate, key)")
		}
		return insecure.NewCredentials(), []CredentialsOption{AllowInsecure()}, nil
	}
	conf, err := tlsconfig.Client(o.CAFile, o.CertFile, o.KeyFile, "")
	if err != nil {
		return nil, nil, newError(codes.InvalidArgument, "%v", err)
	}
	return credentials.NewTLS(conf), nil, nil
}

// transportHint returns what to do about a connection failure that comes
// from mixing up TLS and plaintext or from the TLS set-up, or "".
func transportHint(msg string) string {
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "the server speaks plaintext, not TLS (a development server such as `make run`): connect without TLS " +
			"(airlockctl --plaintext or " + EnvPlaintext + "=true; client.Options.Plaintext)"
	case strings.Contains(msg, "error reading server preface"):
		return "the server closed the connection before speaking gRPC: if it serves TLS, connect with TLS " +
			"(drop --plaintext / " + EnvPlaintext + "; give --ca with a private CA, --cert and --key if it requires a client certificate)"
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return "the server's certificate is not signed by a CA this client trusts: give the CA bundle (airlockctl --ca FILE or " + EnvCA + "; client.Options.CAFile)"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"):
		return "the server requires a client certificate (mutual TLS): give --cert and --key (" + EnvCert + ", " + EnvKey + "; client.Options.CertFile, KeyFile)"
	case strings.Contains(msg, "certificate is valid for"), strings.Contains(msg, "doesn't contain any IP SANs"):
		return "the server's certificate does not name the address dialled: dial a name or address its certificate holds"
	}
	return ""
}
