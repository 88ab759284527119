package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/token"
)

// maxPrompt bounds a prompt read from stdin.
const maxPrompt = 1 << 20

func tokenMint(c *cli, fs *flag.FlagSet) func(context.Context) error {
	var features stringList
	fs.Var(&features, "features", "features to request, comma-separated or repeated (default: every feature the user is entitled to)")
	ttl := fs.Duration("ttl", 0, "token lifetime (default: the issuer's, 1h)")
	asJSON := fs.Bool("json", false, "print the whole response as JSON")
	format := fs.String("format", "token", "output: token (the JWT alone), json, or env (shell assignments AIRLOCK_JWT, AIRLOCK_JTI, AIRLOCK_INSTANCE_ID, AIRLOCK_GLOBAL_USER_ID for eval)")
	return func(ctx context.Context) error {
		if *ttl < 0 {
			return usagef("--ttl must be positive")
		}
		if *asJSON {
			*format = "json"
		}
		switch *format {
		case "token", "json", "env":
		default:
			return usagef("--format %q: want token, json or env", *format)
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		req := &issuerv1.MintTokenRequest{Features: features}
		if *ttl > 0 {
			req.Ttl = durationpb.New(*ttl)
		}
		resp, err := issuerv1.NewTokenServiceClient(cc).MintToken(ctx, req)
		if err != nil {
			return err
		}
		switch *format {
		case "json":
			return printJSON(c.io.Stdout, resp)
		case "env":
			md := resp.GetMetadata()
			_, err = fmt.Fprintf(c.io.Stdout, "AIRLOCK_JWT=%s\nAIRLOCK_JTI=%s\nAIRLOCK_INSTANCE_ID=%s\nAIRLOCK_GLOBAL_USER_ID=%s\n",
				shellQuote(resp.GetToken()), shellQuote(resp.GetJti()), shellQuote(md[token.MDInstanceID]), shellQuote(md[token.MDGlobalUserID]))
			return err
		}
		_, err = fmt.Fprintln(c.io.Stdout, resp.GetToken())
		return err
	}
}

// shellQuote quotes s for a POSIX shell's eval.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func tokenRevoke(c *cli, fs *flag.FlagSet) func(context.Context) error {
	jti := fs.String("jti", "", "id (jti claim) of the token to revoke")
	return func(ctx context.Context) error {
		if *jti == "" {
			return usagef("--jti is required")
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewTokenServiceClient(cc).RevokeToken(ctx, &issuerv1.RevokeTokenRequest{Jti: *jti})
		if err != nil {
			return err
		}
		r := resp.GetRevocation()
		_, err = fmt.Fprintf(c.io.Stdout, "revoked %s (expires %s)\n", r.GetJti(), formatTime(r.GetExpireTime().AsTime()))
		return err
	}
}

func complete(c *cli, fs *flag.FlagSet) func(context.Context) error {
	feat := fs.String("feature", "", "feature: code_completions, code_generations or duo_chat")
	prompt := fs.String("prompt", "", "prompt text (default: read from stdin)")
	maxTokens := fs.Uint("max-tokens", 0, "maximum tokens to generate (default: the gateway's)")
	jwt := fs.String("jwt", "", "use this minted token instead of minting one with the personal access token")
	unary := fs.Bool("unary", false, "call Complete and print the whole answer at once instead of streaming")
	return func(ctx context.Context) error {
		if *feat == "" {
			return usagef("--feature is required")
		}
		if *maxTokens > 1<<31 {
			return usagef("--max-tokens is too large")
		}
		text, err := c.prompt(*prompt)
		if err != nil {
			return err
		}
		src, err := c.tokenSource(*jwt, *feat)
		if err != nil {
			return err
		}
		// Mint before the call: gRPC turns some codes coming out of per-RPC
		// credentials into Internal (gRFC A54), and the user should see the
		// issuer's own code and message.
		if _, err := src.Token(ctx); err != nil {
			return err
		}
		gc, err := c.dial(c.g.gateway, func(o ...client.CredentialsOption) credentials.PerRPCCredentials {
			return client.NewPerRPCCredentials(src, o...)
		})
		if err != nil {
			return err
		}
		cl := client.New(gc)
		msgs := []*gatewayv1.Message{client.User(text)}
		var opts *gatewayv1.GenerationOptions
		if *maxTokens > 0 {
			opts = &gatewayv1.GenerationOptions{MaxTokens: uint32(*maxTokens)}
		}
		if *unary {
			res, err := cl.CompleteRequest(ctx, &gatewayv1.CompleteRequest{Feature: *feat, Messages: msgs, Options: opts})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.io.Stdout, res.Text)
			c.printDone(res.Done)
			return nil
		}
		s := cl.StreamRequest(ctx, &gatewayv1.StreamCompletionRequest{Feature: *feat, Messages: msgs, Options: opts})
		defer s.Close()
		wrote := false
		for s.Next() {
			// Unbuffered on purpose: each delta shows as it arrives.
			if _, err := io.WriteString(c.io.Stdout, s.Text()); err != nil {
				return err
			}
			wrote = true
		}
		done, err := s.Done()
		if err != nil {
			if wrote {
				fmt.Fprintln(c.io.Stdout)
			}
			return err
		}
		fmt.Fprintln(c.io.Stdout)
		c.printDone(done)
		return nil
	}
}

// prompt returns flagValue, or stdin (bounded) when it is empty.
func (c *cli) prompt(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.io.Stdin, maxPrompt+1))
	if err != nil {
		return "", fmt.Errorf("read prompt from stdin: %w", err)
	}
	if len(b) > maxPrompt {
		return "", usagef("prompt on stdin is larger than %d bytes", maxPrompt)
	}
	if strings.TrimSpace(string(b)) == "" {
		return "", usagef("no prompt: give --prompt or write it to stdin")
	}
	return string(b), nil
}

// tokenSource returns the token to call the gateway with: the given JWT,
// or one minted with the personal access token for just this feature,
// living a little longer than the command may run.
func (c *cli) tokenSource(jwt, feat string) (client.Source, error) {
	if jwt != "" {
		tok, err := client.TokenFromJWT(jwt)
		if err != nil {
			return nil, usagef("--jwt: %s", client.FromError(err).Message)
		}
		return client.StaticSource(tok), nil
	}
	ic, err := c.issuerConn()
	if err != nil {
		return nil, err
	}
	ts := client.NewTokenSource(issuerv1.NewTokenServiceClient(ic),
		client.WithFeatures(feat), client.WithTTL(c.g.timeout+time.Minute))
	c.closers = append(c.closers, func() { _ = ts.Close() })
	return ts, nil
}

func (c *cli) printDone(d client.Done) {
	line := fmt.Sprintf("finish=%s model=%s", d.Reason(), d.Model)
	if d.Usage != nil {
		line += fmt.Sprintf(" prompt_tokens=%d completion_tokens=%d", d.Usage.PromptTokens, d.Usage.CompletionTokens)
	}
	fmt.Fprintln(c.io.Stderr, line)
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func formatTime(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
