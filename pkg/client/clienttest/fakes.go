package clienttest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/bearer"
	"github.com/airlock-dev/airlock/pkg/feature"
	"github.com/airlock-dev/airlock/pkg/token"
)

// InstanceID is the fake instance's UUID (sub claim, x-gitlab-instance-id).
const InstanceID = "5b0b0e6a-4c1f-4e59-9a57-2f1f0c1d0001"

// Issuer is a fake TokenService. Personal access tokens are registered with
// AddUser; minted tokens are unsigned JWT-shaped strings with the real
// claims, which its Gateway accepts until they expire or are revoked. Safe for concurrent use.
type Issuer struct {
	issuerv1.UnimplementedTokenServiceServer

	now func() time.Time

	mu      sync.Mutex
	users   map[string]fakeUser // by PAT
	tokens  map[string]minted   // by token
	ttl     time.Duration
	failErr error
	mints   int
	revoked map[string]bool
	block   chan struct{}
}

type fakeUser struct {
	id       uint64
	features []feature.Feature
}

type minted struct {
	jti    string
	exp    time.Time
	scopes []string
}

// NewIssuer returns an Issuer minting one-hour tokens on the clock now
// (time.Now if nil).
func NewIssuer(now func() time.Time) *Issuer {
	if now == nil {
		now = time.Now
	}
	return &Issuer{now: now, users: map[string]fakeUser{}, tokens: map[string]minted{}, revoked: map[string]bool{}, ttl: token.DefaultTTL}
}

// Register adds the TokenService to s.
func (i *Issuer) Register(s grpc.ServiceRegistrar) { issuerv1.RegisterTokenServiceServer(s, i) }

// AddUser registers a personal access token for a user entitled to
// features (every feature if none).
func (i *Issuer) AddUser(pat string, features ...feature.Feature) {
	if len(features) == 0 {
		features = feature.All
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.users[pat] = fakeUser{id: uint64(len(i.users) + 1), features: features}
}

// SetTTL sets the default and maximum token lifetime.
func (i *Issuer) SetTTL(d time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.ttl = d
}

// FailMints makes every MintToken fail with err (a status error) until
// called with nil.
func (i *Issuer) FailMints(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failErr = err
}

// BlockMints makes MintToken wait until the returned function is called,
// to hold a mint in flight.
func (i *Issuer) BlockMints() (release func()) {
	ch := make(chan struct{})
	i.mu.Lock()
	i.block = ch
	i.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			i.mu.Lock()
			i.block = nil
			i.mu.Unlock()
			close(ch)
		})
	}
}

// Mints returns how many tokens were minted successfully.
func (i *Issuer) Mints() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.mints
}

// MintToken implements issuerv1.TokenServiceServer.
func (i *Issuer) MintToken(ctx context.Context, req *issuerv1.MintTokenRequest) (*issuerv1.MintTokenResponse, error) {
	i.mu.Lock()
	block := i.block
	i.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	pat, err := patFrom(ctx)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.failErr != nil {
		return nil, i.failErr
	}
	u, ok := i.users[pat]
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "invalid personal access token")
	}
	want := u.features
	if len(req.GetFeatures()) > 0 {
		want = nil
		for _, name := range req.GetFeatures() {
			f, err := feature.Parse(name)
			if err != nil {
				return nil, status.Error(codes.InvalidArgument, err.Error())
			}
			for _, e := range u.features {
				if e == f {
					want = append(want, f)
				}
			}
		}
	}
	if len(want) == 0 {
		return nil, status.Error(codes.PermissionDenied, "not entitled to any requested feature")
	}
	ttl := i.ttl
	if d := req.GetTtl(); d != nil {
		if d.AsDuration() <= 0 {
			return nil, status.Error(codes.InvalidArgument, "ttl must be positive")
		}
		ttl = min(ttl, d.AsDuration())
	}
	i.mints++
	jti := fmt.Sprintf("jti-%d", i.mints)
	m := minted{jti: jti, exp: i.now().Add(ttl).Truncate(time.Second), scopes: feature.Scopes(want)}
	tok := fakeJWT(m, i.mints)
	i.tokens[tok] = m
	return &issuerv1.MintTokenResponse{
		Token:      tok,
		Jti:        jti,
		ExpireTime: timestamppb.New(m.exp),
		Scopes:     m.scopes,
		Metadata:   token.Metadata(tok, InstanceID, fmt.Sprintf("fake-global-user-%d", u.id)),
	}, nil
}

// fakeJWT shapes a token like a compact JWS with the real claims, so tools
// that read claims (client.TokenFromJWT) work, but signs nothing: only this
// package's Gateway accepts it, by lookup.
func fakeJWT(m minted, n int) string {
	claims, _ := json.Marshal(token.Claims{
		ID: m.jti, Audience: token.Audiences{token.Audience}, Subject: InstanceID, Issuer: "https://gitlab.example.test",
		Expiry: token.NewNumericDate(m.exp), Realm: token.RealmSelfManaged, Scopes: m.scopes, InstanceID: InstanceID,
	})
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(claims) + "." + enc(fmt.Appendf(nil, "fake-signature-%d", n))
}

// RevokeToken implements issuerv1.TokenServiceServer for any known PAT.
func (i *Issuer) RevokeToken(ctx context.Context, req *issuerv1.RevokeTokenRequest) (*issuerv1.RevokeTokenResponse, error) {
	pat, err := patFrom(ctx)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, ok := i.users[pat]; !ok {
		return nil, status.Error(codes.Unauthenticated, "invalid personal access token")
	}
	for _, m := range i.tokens {
		if m.jti == req.GetJti() {
			i.revoked[m.jti] = true
			return &issuerv1.RevokeTokenResponse{Revocation: &issuerv1.Revocation{
				Jti: m.jti, ExpireTime: timestamppb.New(m.exp), RevokeTime: timestamppb.New(i.now()),
			}}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no token with jti %q", req.GetJti())
}

// verify returns the scopes of a token the issuer minted that is neither
// expired nor revoked.
func (i *Issuer) verify(tok string) ([]string, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	m, ok := i.tokens[tok]
	if !ok || !i.now().Before(m.exp) || i.revoked[m.jti] {
		return nil, false
	}
	return m.scopes, true
}

// Gateway is a fake CompletionService that accepts its Issuer's tokens,
// checks the metadata as the real gateway does (same codes and messages),
// and answers with a fixed reply, one word per delta. Safe for concurrent
// use.
type Gateway struct {
	gatewayv1.UnimplementedCompletionServiceServer

	issuer *Issuer

	mu       sync.Mutex
	reply    string
	model    string
	failErr  error
	requests []*gatewayv1.StreamCompletionRequest
}

// NewGateway returns a Gateway trusting iss, replying "Hello from the fake
// gateway." as model "fake-model".
func NewGateway(iss *Issuer) *Gateway {
	return &Gateway{issuer: iss, reply: "Hello from the fake gateway.", model: "fake-model"}
}

// Register adds the CompletionService to s.
func (g *Gateway) Register(s grpc.ServiceRegistrar) { gatewayv1.RegisterCompletionServiceServer(s, g) }

// SetReply sets the answer text; it is streamed one word (with its
// following space) per delta.
func (g *Gateway) SetReply(text string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reply = text
}

// FailWith makes every authorised call fail with err after the first delta
// (a status error; see RateLimited), until called with nil.
func (g *Gateway) FailWith(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failErr = err
}

// Requests returns the requests received so far (Complete requests as
// their streaming equivalent).
func (g *Gateway) Requests() []*gatewayv1.StreamCompletionRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*gatewayv1.StreamCompletionRequest(nil), g.requests...)
}

// StreamCompletion implements gatewayv1.CompletionServiceServer.
func (g *Gateway) StreamCompletion(req *gatewayv1.StreamCompletionRequest, ss grpc.ServerStreamingServer[gatewayv1.StreamCompletionResponse]) error {
	a, err := g.serve(ss.Context(), req)
	if err != nil {
		return err
	}
	for n, w := range a.words {
		if err := ss.Send(&gatewayv1.StreamCompletionResponse{Text: w}); err != nil {
			return err
		}
		if n == 0 && a.failErr != nil {
			return a.failErr
		}
	}
	return ss.Send(&gatewayv1.StreamCompletionResponse{Done: a.done})
}

// Complete implements gatewayv1.CompletionServiceServer.
func (g *Gateway) Complete(ctx context.Context, req *gatewayv1.CompleteRequest) (*gatewayv1.CompleteResponse, error) {
	a, err := g.serve(ctx, &gatewayv1.StreamCompletionRequest{
		Feature: req.GetFeature(), Messages: req.GetMessages(), CodeContext: req.GetCodeContext(), Options: req.GetOptions(),
	})
	if err != nil {
		return nil, err
	}
	if a.failErr != nil {
		return nil, a.failErr
	}
	return &gatewayv1.CompleteResponse{Text: strings.Join(a.words, ""), Done: a.done}, nil
}

// answer is what an authorised call replies: the deltas, the closing
// message, and the error to end with after the first delta, if any.
type answer struct {
	words   []string
	done    *gatewayv1.CompletionDone
	failErr error
}

func (g *Gateway) serve(ctx context.Context, req *gatewayv1.StreamCompletionRequest) (answer, error) {
	scopes, err := g.authenticate(ctx)
	if err != nil {
		return answer{}, err
	}
	f, err := feature.Parse(req.GetFeature())
	if err != nil {
		return answer{}, status.Error(codes.InvalidArgument, err.Error())
	}
	if !f.Allowed(scopes) {
		return answer{}, status.Errorf(codes.PermissionDenied, "Unauthorized to access %s", strings.ReplaceAll(string(f), "_", " "))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, req)
	words := strings.SplitAfter(g.reply, " ")
	done := &gatewayv1.CompletionDone{
		FinishReason: gatewayv1.FinishReason_FINISH_REASON_STOP,
		Usage:        &gatewayv1.Usage{PromptTokens: uint32(len(req.GetMessages())), CompletionTokens: uint32(len(words))},
		Model:        g.model,
	}
	return answer{words: words, done: done, failErr: g.failErr}, nil
}

func (g *Gateway) authenticate(ctx context.Context) ([]string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := md.Get(token.MDAuthorization)
	if len(auth) == 0 {
		return nil, status.Error(codes.Unauthenticated, "No authorization header presented")
	}
	tok, ok := bearer.Parse(auth[0])
	if len(auth) != 1 || !ok {
		return nil, status.Error(codes.Unauthenticated, "Invalid authorization header")
	}
	if v := md.Get(token.MDAuthType); len(v) == 0 || v[0] != token.AuthTypeOIDC {
		return nil, status.Error(codes.Unauthenticated, "Invalid authentication token type - only OIDC is supported")
	}
	scopes, ok := g.issuer.verify(tok)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "Forbidden by auth provider")
	}
	if v := md.Get(token.MDInstanceID); len(v) == 0 || v[0] != InstanceID {
		return nil, status.Error(codes.Unauthenticated, "Header mismatch 'X-Gitlab-Instance-Id'")
	}
	if v := md.Get(token.MDRealm); len(v) == 0 || v[0] != token.RealmSelfManaged {
		return nil, status.Error(codes.Unauthenticated, "Header mismatch 'X-Gitlab-Realm'")
	}
	return scopes, nil
}

// RateLimited returns the status the gateway sends when the model server is
// rate limiting: ResourceExhausted with a RetryInfo detail.
func RateLimited(retryAfter time.Duration) error {
	st, err := status.New(codes.ResourceExhausted, "model server rate limit exceeded").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	if err != nil {
		panic(err) // only fails for a nil or unmarshalable detail
	}
	return st.Err()
}

// patFrom returns the caller's PAT, read as the real issuer reads it.
func patFrom(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(token.MDAuthorization)
	if len(v) == 0 {
		return "", status.Error(codes.Unauthenticated, "missing personal access token")
	}
	pat, ok := bearer.Parse(v[0])
	if len(v) != 1 || !ok {
		return "", status.Error(codes.Unauthenticated, "invalid authorization header")
	}
	return pat, nil
}

// Interface guards.
var (
	_ issuerv1.TokenServiceServer       = (*Issuer)(nil)
	_ gatewayv1.CompletionServiceServer = (*Gateway)(nil)
)
