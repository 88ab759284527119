package client

import (
	"context"
	"strings"

	"google.golang.org/grpc/credentials"

	"github.com/airlock-dev/airlock/pkg/bearer"
	"github.com/airlock-dev/airlock/pkg/token"
)

// CredentialsOption configures NewPerRPCCredentials and PATCredentials.
type CredentialsOption func(*credOptions)

type credOptions struct {
	allowInsecure bool
}

// AllowInsecure lets the credentials be sent over a connection without
// transport security. Use it only for loopback development servers and
// in-process tests: anyone on the path can read and replay the secrets.
func AllowInsecure() CredentialsOption {
	return func(o *credOptions) { o.allowInsecure = true }
}

func applyCredOptions(opts []CredentialsOption) credOptions {
	var o credOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// NewPerRPCCredentials returns gRPC per-RPC credentials that attach a token
// from src to every call as "authorization: Bearer <jwt>", together with
// the token's x-gitlab-* metadata. Dial the gateway with
// grpc.WithPerRPCCredentials(NewPerRPCCredentials(src)). Unless
// AllowInsecure is given, gRPC refuses to create a connection that carries
// them without transport security, so the token is never sent in clear.
//
// When src fails, the call fails before anything is sent, with src's code
// and message, except that gRPC reports codes a control plane must not
// produce (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
// Aborted, OutOfRange, DataLoss; gRFC A54) as Internal; call src.Token
// first to see the original error.
func NewPerRPCCredentials(src Source, opts ...CredentialsOption) credentials.PerRPCCredentials {
	return &tokenCredentials{src: src, opts: applyCredOptions(opts)}
}

type tokenCredentials struct {
	src  Source
	opts credOptions
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *tokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := c.src.Token(ctx)
	if err != nil {
		return nil, err
	}
	return tok.requestMetadata(), nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c *tokenCredentials) RequireTransportSecurity() bool { return !c.opts.allowInsecure }

// PATCredentials returns gRPC per-RPC credentials that send a personal
// access token as "authorization: Bearer <pat>", for calling the issuer
// (MintToken and the administrator services). Surrounding whitespace, such
// as a token file's trailing newline, is removed. The same transport
// security rule as NewPerRPCCredentials applies.
func PATCredentials(pat string, opts ...CredentialsOption) credentials.PerRPCCredentials {
	return &patCredentials{md: bearer.Format(strings.TrimSpace(pat)), opts: applyCredOptions(opts)}
}

type patCredentials struct {
	md   string
	opts credOptions
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *patCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{token.MDAuthorization: c.md}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c *patCredentials) RequireTransportSecurity() bool { return !c.opts.allowInsecure }

// String never shows the personal access token.
func (c *patCredentials) String() string { return "client.PATCredentials{redacted}" }

// Interface guards.
var (
	_ credentials.PerRPCCredentials = (*tokenCredentials)(nil)
	_ credentials.PerRPCCredentials = (*patCredentials)(nil)
)
