package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/model"
)

// envModelAPIKey holds a model's API key when --api-key-file is not given.
const envModelAPIKey = "AIRLOCK_MODEL_API_KEY"

// modelFlags are the flags of model create and model update.
type modelFlags struct {
	name, family, provider, endpoint, identifier string
	apiKeyFile, fallback, apiVersion             string
	trusted                                      stringList
	clearKey                                     *bool
	asJSON                                       *bool
}

func registerModelFlags(fs *flag.FlagSet, update bool) *modelFlags {
	m := &modelFlags{}
	fs.StringVar(&m.name, "name", "", "unique model name")
	fs.StringVar(&m.family, "family", "", "model family: "+model.FamilyList())
	fs.StringVar(&m.provider, "provider", "", "provider API: "+model.ProviderList())
	fs.StringVar(&m.endpoint, "endpoint", "", "model server base URL, without the API path the gateway appends:\n"+
		"openai_compatible http://host:8000/v1 (must hold the version path); ollama http://host:11434;\n"+
		"anthropic https://host[/v1]; azure_openai https://<resource>.openai.azure.com; tgi http://host:8080")
	fs.StringVar(&m.identifier, "identifier", "", "model name at the server; azure_openai: the deployment name (not the model name)")
	fs.StringVar(&m.apiKeyFile, "api-key-file", "", "file holding the model's API key (or env "+envModelAPIKey+")")
	fs.Var(&m.trusted, "trusted-network", "CIDR the endpoint must resolve into; repeatable or comma-separated")
	fs.StringVar(&m.fallback, "fallback", "", "model to fall back to")
	fs.StringVar(&m.apiVersion, "api-version", "", "azure_openai only: the api-version query, YYYY-MM-DD[-preview] (default 2024-10-21); refused for other providers")
	if update {
		m.clearKey = fs.Bool("clear-api-key", false, "remove the stored API key")
	}
	m.asJSON = fs.Bool("json", false, "print the stored model as JSON")
	return m
}

// model builds the request's model. The API key comes from the file or the
// environment, never from a flag value that would show in ps.
func (m *modelFlags) model(c *cli) (*issuerv1.Model, error) {
	if m.name == "" {
		return nil, usagef("--name is required")
	}
	key := ""
	if m.apiKeyFile != "" {
		k, err := readSecretFile(m.apiKeyFile, "API key file")
		if err != nil {
			return nil, err
		}
		key = k
	} else if v, ok := c.io.Getenv(envModelAPIKey); ok {
		key = strings.TrimSpace(v)
	}
	if key != "" && m.clearKey != nil && *m.clearKey {
		return nil, usagef("--clear-api-key conflicts with an API key (--api-key-file or %s)", envModelAPIKey)
	}
	if m.apiVersion != "" && m.provider != "" && m.provider != model.AzureOpenAI {
		return nil, usagef("--api-version is for --provider azure_openai only; %s has no api version", m.provider)
	}
	return &issuerv1.Model{
		Name: m.name, Family: m.family, Provider: m.provider, Endpoint: m.endpoint, Identifier: m.identifier,
		ApiKey: key, TrustedNetworks: m.trusted, FallbackModel: m.fallback, ApiVersion: m.apiVersion,
	}, nil
}

func modelCreate(c *cli, fs *flag.FlagSet) func(context.Context) error {
	mf := registerModelFlags(fs, false)
	return func(ctx context.Context) error {
		m, err := mf.model(c)
		if err != nil {
			return err
		}
		for flagName, v := range map[string]string{"family": m.Family, "provider": m.Provider, "endpoint": m.Endpoint, "identifier": m.Identifier} {
			if v == "" {
				return usagef("--%s is required", flagName)
			}
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewModelServiceClient(cc).CreateModel(ctx, &issuerv1.CreateModelRequest{Model: m})
		if err != nil {
			return err
		}
		return c.printModel(resp.GetModel(), *mf.asJSON)
	}
}

// maskPaths maps model update's flags to the Model fields they set, in
// proto field order.
var maskPaths = []struct{ flag, path string }{
	{"family", "family"}, {"provider", "provider"}, {"endpoint", "endpoint"}, {"identifier", "identifier"},
	{"api-key-file", "api_key"}, {"trusted-network", "trusted_networks"}, {"fallback", "fallback_model"}, {"api-version", "api_version"},
}

// updateMask names exactly the fields whose flags the user set (so
// `--fallback ""` removes the fallback and leaving a flag out keeps the
// field), plus api_key when a key came from the environment.
func updateMask(fs *flag.FlagSet, m *issuerv1.Model) *fieldmaskpb.FieldMask {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	mask := &fieldmaskpb.FieldMask{}
	for _, p := range maskPaths {
		if set[p.flag] || (p.path == "api_key" && m.GetApiKey() != "") {
			mask.Paths = append(mask.Paths, p.path)
		}
	}
	return mask
}

func modelUpdate(c *cli, fs *flag.FlagSet) func(context.Context) error {
	mf := registerModelFlags(fs, true)
	return func(ctx context.Context) error {
		m, err := mf.model(c)
		if err != nil {
			return err
		}
		mask := updateMask(fs, m)
		if len(mask.GetPaths()) == 0 && !*mf.clearKey {
			return usagef("nothing to update: set at least one of --family, --provider, --endpoint, --identifier, --api-key-file, --trusted-network, --fallback, --api-version, --clear-api-key")
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewModelServiceClient(cc).UpdateModel(ctx, &issuerv1.UpdateModelRequest{Model: m, UpdateMask: mask, ClearApiKey: *mf.clearKey})
		if err != nil {
			return err
		}
		return c.printModel(resp.GetModel(), *mf.asJSON)
	}
}

func modelGet(c *cli, fs *flag.FlagSet) func(context.Context) error {
	name := fs.String("name", "", "model name")
	asJSON := fs.Bool("json", false, "print as JSON")
	return func(ctx context.Context) error {
		if *name == "" {
			return usagef("--name is required")
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewModelServiceClient(cc).GetModel(ctx, &issuerv1.GetModelRequest{Name: *name})
		if err != nil {
			return err
		}
		return c.printModel(resp.GetModel(), *asJSON)
	}
}

func modelList(c *cli, fs *flag.FlagSet) func(context.Context) error {
	return listCommand(c, fs, func(ctx context.Context, cc *grpc.ClientConn) (*issuerv1.ListModelsResponse, error) {
		resp, err := issuerv1.NewModelServiceClient(cc).ListModels(ctx, &issuerv1.ListModelsRequest{})
		for _, m := range resp.GetModels() {
			m.ApiKey = "" // write-only: never printed, even if a server sent one
		}
		return resp, err
	}, "NAME\tFAMILY\tPROVIDER\tENDPOINT\tIDENTIFIER\tAPI KEY\tFALLBACK", func(w io.Writer, resp *issuerv1.ListModelsResponse) {
		for _, m := range resp.GetModels() {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetName(), m.GetFamily(), m.GetProvider(), m.GetEndpoint(),
				m.GetIdentifier(), keyState(m), dash(m.GetFallbackModel()))
		}
	})
}

func modelDelete(c *cli, fs *flag.FlagSet) func(context.Context) error {
	name := fs.String("name", "", "model name")
	return func(ctx context.Context) error {
		if *name == "" {
			return usagef("--name is required")
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		if _, err := issuerv1.NewModelServiceClient(cc).DeleteModel(ctx, &issuerv1.DeleteModelRequest{Name: *name}); err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.io.Stdout, "deleted model %s\n", *name)
		return err
	}
}

func (c *cli) printModel(m *issuerv1.Model, asJSON bool) error {
	m.ApiKey = "" // write-only: never printed, even if a server sent one
	if asJSON {
		return printJSON(c.io.Stdout, m)
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 1, ' ', 0)
	for _, kv := range [][2]string{
		{"name", m.GetName()}, {"family", m.GetFamily()}, {"provider", m.GetProvider()},
		{"endpoint", m.GetEndpoint()}, {"identifier", m.GetIdentifier()}, {"api key", keyState(m)},
		{"trusted networks", dash(strings.Join(m.GetTrustedNetworks(), ","))}, {"fallback", dash(m.GetFallbackModel())},
		{"api version", dash(m.GetApiVersion())}, {"updated", formatTime(m.GetUpdateTime().AsTime())},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func keyState(m *issuerv1.Model) string {
	if m.GetHasApiKey() {
		return "set"
	}
	return "none"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func featureSet(c *cli, fs *flag.FlagSet) func(context.Context) error {
	feat := fs.String("feature", "", "feature: code_completions, code_generations or duo_chat")
	model := fs.String("model", "", "model to serve the feature")
	disabled := fs.Bool("disabled", false, "turn the feature off")
	asJSON := fs.Bool("json", false, "print as JSON")
	return func(ctx context.Context) error {
		switch {
		case *feat == "":
			return usagef("--feature is required")
		case (*model == "") == !*disabled:
			return usagef("give exactly one of --model and --disabled")
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewModelServiceClient(cc).SetFeatureSetting(ctx, &issuerv1.SetFeatureSettingRequest{
			Setting: &issuerv1.FeatureSetting{Feature: *feat, Model: *model, Disabled: *disabled},
		})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.io.Stdout, resp.GetSetting())
		}
		_, err = fmt.Fprintf(c.io.Stdout, "%s: %s\n", resp.GetSetting().GetFeature(), settingTarget(resp.GetSetting()))
		return err
	}
}

func settingTarget(s *issuerv1.FeatureSetting) string {
	if s.GetDisabled() {
		return "disabled"
	}
	return dash(s.GetModel())
}

func featureList(c *cli, fs *flag.FlagSet) func(context.Context) error {
	return listCommand(c, fs, func(ctx context.Context, cc *grpc.ClientConn) (*issuerv1.ListFeatureSettingsResponse, error) {
		return issuerv1.NewModelServiceClient(cc).ListFeatureSettings(ctx, &issuerv1.ListFeatureSettingsRequest{})
	}, "FEATURE\tMODEL", func(w io.Writer, resp *issuerv1.ListFeatureSettingsResponse) {
		for _, s := range resp.GetSettings() {
			fmt.Fprintf(w, "%s\t%s\n", s.GetFeature(), settingTarget(s))
		}
	})
}

func keysGet(c *cli, fs *flag.FlagSet) func(context.Context) error {
	jwks := fs.Bool("jwks", false, "print the JWK Set (RFC 7517) only")
	asJSON := fs.Bool("json", false, "print the whole key set as JSON")
	return func(ctx context.Context) error {
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewKeyServiceClient(cc).GetKeys(ctx, &issuerv1.GetKeysRequest{})
		if err != nil {
			return err
		}
		return c.printKeySet(resp.GetKeySet(), *jwks, *asJSON)
	}
}

func keysRotate(c *cli, fs *flag.FlagSet) func(context.Context) error {
	asJSON := fs.Bool("json", false, "print the new key set as JSON")
	return func(ctx context.Context) error {
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewKeyServiceClient(cc).RotateKeys(ctx, &issuerv1.RotateKeysRequest{})
		if err != nil {
			return err
		}
		return c.printKeySet(resp.GetKeySet(), false, *asJSON)
	}
}

func (c *cli) printKeySet(ks *issuerv1.KeySet, jwks, asJSON bool) error {
	switch {
	case jwks:
		_, err := fmt.Fprintf(c.io.Stdout, "%s\n", ks.GetJwks())
		return err
	case asJSON:
		return printJSON(c.io.Stdout, ks)
	}
	fmt.Fprintf(c.io.Stdout, "revision %d, updated %s\n", ks.GetRevision(), formatTime(ks.GetUpdateTime().AsTime()))
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tACTIVATE\tRETIRE\tEXPIRE")
	for _, k := range ks.GetKeys() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.GetKid(), k.GetAlg(),
			strings.ToLower(strings.TrimPrefix(k.GetState().String(), "KEY_STATE_")),
			formatTime(k.GetActivateTime().AsTime()), formatTime(k.GetRetireTime().AsTime()), formatTime(k.GetExpireTime().AsTime()))
	}
	return tw.Flush()
}

var roles = map[string]issuerv1.Role{
	"user":    issuerv1.Role_ROLE_USER,
	"admin":   issuerv1.Role_ROLE_ADMIN,
	"gateway": issuerv1.Role_ROLE_GATEWAY,
}

func roleName(r issuerv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func userCreate(c *cli, fs *flag.FlagSet) func(context.Context) error {
	username := fs.String("username", "", "user name")
	role := fs.String("role", "user", "role: user, admin or gateway")
	var features stringList
	fs.Var(&features, "features", "features the user is entitled to, comma-separated or repeated")
	asJSON := fs.Bool("json", false, "print as JSON")
	return func(ctx context.Context) error {
		r, ok := roles[*role]
		switch {
		case *username == "":
			return usagef("--username is required")
		case !ok:
			return usagef("--role %q: want user, admin or gateway", *role)
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewUserServiceClient(cc).CreateUser(ctx, &issuerv1.CreateUserRequest{
			User: &issuerv1.User{Username: *username, Role: r, EntitledFeatures: features},
		})
		if err != nil {
			return err
		}
		u := resp.GetUser()
		if *asJSON {
			return printJSON(c.io.Stdout, u)
		}
		_, err = fmt.Fprintf(c.io.Stdout, "created user %s (id %d, role %s, features %s)\n", u.GetUsername(), u.GetId(),
			roleName(u.GetRole()), dash(strings.Join(u.GetEntitledFeatures(), ",")))
		return err
	}
}

func userList(c *cli, fs *flag.FlagSet) func(context.Context) error {
	return listCommand(c, fs, func(ctx context.Context, cc *grpc.ClientConn) (*issuerv1.ListUsersResponse, error) {
		return issuerv1.NewUserServiceClient(cc).ListUsers(ctx, &issuerv1.ListUsersRequest{})
	}, "USERNAME\tID\tROLE\tFEATURES", func(w io.Writer, resp *issuerv1.ListUsersResponse) {
		for _, u := range resp.GetUsers() {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", u.GetUsername(), u.GetId(), roleName(u.GetRole()), dash(strings.Join(u.GetEntitledFeatures(), ",")))
		}
	})
}

// listCommand is a list subcommand: it fetches resp from the issuer and
// prints it as JSON (--json) or as a table with header and one row per item.
func listCommand[R proto.Message](c *cli, fs *flag.FlagSet, fetch func(context.Context, *grpc.ClientConn) (R, error),
	header string, rows func(io.Writer, R)) func(context.Context) error {
	asJSON := fs.Bool("json", false, "print as JSON")
	return func(ctx context.Context) error {
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := fetch(ctx, cc)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.io.Stdout, resp)
		}
		tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		rows(tw, resp)
		return tw.Flush()
	}
}

func patCreate(c *cli, fs *flag.FlagSet) func(context.Context) error {
	username := fs.String("username", "", "user the token belongs to")
	expires := fs.Duration("expires", 720*time.Hour, "lifetime of the token")
	out := fs.String("out", "", "write the token to this file (mode 0600) instead of stdout")
	force := fs.Bool("force", false, "with --out, replace an existing file")
	return func(ctx context.Context) error {
		switch {
		case *username == "":
			return usagef("--username is required")
		case *expires <= 0:
			return usagef("--expires must be positive")
		case *force && *out == "":
			return usagef("--force needs --out")
		}
		if *out != "" && !*force {
			// Checked before the token exists, so a refusal mints nothing.
			if _, err := os.Lstat(*out); err == nil {
				return usagef("%s exists: give --force to replace it", *out)
			}
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		resp, err := issuerv1.NewUserServiceClient(cc).CreatePersonalAccessToken(ctx, &issuerv1.CreatePersonalAccessTokenRequest{
			Username: *username, ExpireTime: timestamppb.New(time.Now().Add(*expires)),
		})
		if err != nil {
			return err
		}
		// The id goes to stderr (for revocation), also when writing the
		// file fails; the secret goes to --out or alone on stdout.
		fmt.Fprintf(c.io.Stderr, "created personal access token %s for %s (expires %s)\n", resp.GetToken().GetId(),
			resp.GetToken().GetUsername(), formatTime(resp.GetToken().GetExpireTime().AsTime()))
		if *out != "" {
			if err := writeSecretFile(*out, resp.GetSecret()+"\n", *force); err != nil {
				return fmt.Errorf("write %s: %w (revoke the token: airlockctl pat revoke --id %s)", *out, err, resp.GetToken().GetId())
			}
			fmt.Fprintf(c.io.Stderr, "wrote it to %s (mode 0600)\n", *out)
			return nil
		}
		_, err = fmt.Fprintln(c.io.Stdout, resp.GetSecret())
		return err
	}
}

func patRevoke(c *cli, fs *flag.FlagSet) func(context.Context) error {
	id := fs.String("id", "", "id of the personal access token")
	return func(ctx context.Context) error {
		if *id == "" {
			return usagef("--id is required")
		}
		cc, err := c.issuerConn()
		if err != nil {
			return err
		}
		if _, err := issuerv1.NewUserServiceClient(cc).RevokePersonalAccessToken(ctx, &issuerv1.RevokePersonalAccessTokenRequest{Id: *id}); err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.io.Stdout, "revoked personal access token %s\n", *id)
		return err
	}
}

// writeSecretFile writes secret to path, readable by the owner only. It
// refuses an existing path unless replace is set; a replacement is written
// to a new file and renamed over the old one, so the result is 0600 whatever
// the old file's mode was.
func writeSecretFile(path, secret string, replace bool) error {
	if !replace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(secret); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		return f.Close()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(secret); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
