package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	"github.com/airlock-dev/airlock/gateway/httpapi/gitlab"
	"github.com/airlock-dev/airlock/gateway/httpapi/openai"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// buildAPI makes the HTTP API (--api-http-addr): the OpenAI-compatible
// dialect and GitLab's AI gateway dialect on the same verifier and completion core as gRPC, with the same
// TLS and body bound (--max-recv-bytes); serve adds the connection and
// per-connection stream limits (--max-connections, --max-streams-per-conn),
// and the relay the slow-client bound (--client-send-timeout). With the
// flag empty there is no API.
func (g *gateway) buildAPI(v *auth.Verifier, svc *completion.Service, reg prometheus.Registerer) error {
	cfg := g.cfg
	if cfg.APIHTTPAddr == "" {
		return nil
	}
	oai, err := openai.New(openai.Config{Completer: svc, WriteTimeout: cfg.ClientSendTimeout})
	if err != nil {
		return err
	}
	gl, err := gitlab.New(gitlab.Config{
		Completer:     svc,
		Ready:         g.ready,
		RequestModels: gitlab.RequestModels{Allow: cfg.AllowRequestModels, Networks: cfg.RequestModelNetworks},
		WriteTimeout:  cfg.ClientSendTimeout,
		Logger:        g.log.With().Str("component", "httpapi").Str("dialect", gitlab.Name).Logger(),
	})
	if err != nil {
		return err
	}
	h, err := httpapi.NewHandler(httpapi.Config{
		Verifier:     v,
		Dialects:     []httpapi.Dialect{oai, gl},
		MaxBodyBytes: int64(cfg.MaxRecvBytes),
		Logger:       g.log.With().Str("component", "httpapi").Logger(),
		Registerer:   reg,
	})
	if err != nil {
		return err
	}
	if cfg.Plaintext {
		g.log.Warn().Str("addr", cfg.APIHTTPAddr).Msg("serving the HTTP API without TLS (--plaintext): tokens cross the network unencrypted; use only for local development")
	} else if g.apiTLS, err = tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA); err != nil {
		return err
	}
	g.api = h
	return nil
}
