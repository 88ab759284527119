package restapi

import (
	"errors"
	"hash/fnv"
	"net/http"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/feature"
	"github.com/airlock-dev/airlock/pkg/token"
)

// version answers GET /api/v4/version, which the Language Server reads to
// decide which features the instance has.
func (a *API) version(w http.ResponseWriter, _ *http.Request, _ authn.Identity) {
	writeJSON(w, http.StatusOK, map[string]any{
		"version": InstanceVersion, "revision": "airlock", "enterprise": true,
		"kas": map[string]any{"enabled": false, "externalUrl": nil, "externalK8sProxyUrl": nil, "version": nil},
	})
}

// user answers GET /api/v4/user: the PAT's owner.
func (a *API) user(w http.ResponseWriter, _ *http.Request, id authn.Identity) {
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id.UserID, "username": id.Username, "name": id.Username, "state": "active", "locked": false,
		"avatar_url": nil, "web_url": strings.TrimRight(a.cfg.InstanceURL, "/") + "/" + id.Username,
		"bot": id.Role == store.RoleGateway, "is_admin": id.Role == store.RoleAdmin,
	})
}

// patSelf answers GET /api/v4/personal_access_tokens/self, the Language
// Server's token check: it needs active true and the api scope. An
// Airlock PAT carries every right of its owner's role, which is what
// GitLab's api scope means.
func (a *API) patSelf(w http.ResponseWriter, _ *http.Request, id authn.Identity) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id.PATID))
	writeJSON(w, http.StatusOK, map[string]any{
		"id": h.Sum32(), "name": "airlock", "description": "", "revoked": false, "active": true,
		"created_at": id.PATCreateTime.UTC().Format(time.RFC3339), "expires_at": id.PATExpireTime.UTC().Format(time.DateOnly),
		"scopes": []string{"api"}, "user_id": id.UserID, "last_used_at": nil,
	})
}

// codeSuggestionsAllowed is GitLab's access_code_suggestions: a user (not
// the gateway) entitled to a code feature.
func codeSuggestionsAllowed(id authn.Identity) bool {
	if !mayUseAPI(id) {
		return false
	}
	for _, f := range id.Features {
		if feature.Feature(f).IsCode() {
			return true
		}
	}
	return false
}

// connectionDetails answers POST /api/v4/code_suggestions/connection_details
// (GitLab 18.3+): what the IDE needs to build the x-gitlab-* headers.
func (a *API) connectionDetails(w http.ResponseWriter, _ *http.Request, id authn.Identity) {
	if !codeSuggestionsAllowed(id) {
		writeMessage(w, http.StatusForbidden)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"instance_id": a.cfg.InstanceID, "instance_version": InstanceVersion, "realm": token.RealmSelfManaged,
		"global_user_id": a.cfg.GlobalIDs.GlobalUserID(id.UserID), "host_name": a.cfg.HostName,
		"feature_enablement_type": "", "saas_duo_pro_namespace_ids": []string{},
	})
}

// enabled answers POST /api/v4/code_suggestions/enabled {project_path}:
// 200 when the user may use code suggestions, 403 otherwise. Airlock has no
// projects, so any project path counts as one where they are enabled.
func (a *API) enabled(w http.ResponseWriter, r *http.Request, id authn.Identity) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		ProjectPath *string `json:"project_path"`
	}
	if !decodeObject(w, b, &req) {
		return
	}
	if req.ProjectPath == nil || *req.ProjectPath == "" {
		writeParamError(w, "project_path is missing")
		return
	}
	if !codeSuggestionsAllowed(id) {
		writeMessage(w, http.StatusForbidden)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// tokenInfo answers GET /oauth/token/info as GitLab's OAuth provider does,
// for a PAT sent as `Authorization: Bearer`: the Language Server reads
// `scope` and needs api in it. Refusals are the OAuth provider's 401.
func (a *API) tokenInfo(w http.ResponseWriter, r *http.Request) {
	presented, ok := credential(r.Header)
	var id authn.Identity
	var err error
	if ok {
		id, err = a.cfg.PATs.Check(r.Context(), r.RemoteAddr, presented)
	}
	switch {
	case errors.Is(err, authn.ErrLockedOut):
		a.lockedOut(w, r)
		return
	case !ok || errors.Is(err, authn.ErrInvalidPAT):
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "invalid_token", "error_description": "The access token is invalid", "state": "unauthorized"})
		return
	case err != nil:
		a.cfg.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("personal access token lookup failed")
		writeMessage(w, http.StatusServiceUnavailable)
		return
	}
	left := max(0, int64(id.PATExpireTime.Sub(a.cfg.Now())/time.Second))
	writeJSON(w, http.StatusOK, map[string]any{
		"resource_owner_id": id.UserID, "scope": []string{"api"}, "scopes": []string{"api"},
		"expires_in": left, "expires_in_seconds": left, "application": map[string]any{"uid": nil},
		"created_at": id.PATCreateTime.Unix(),
	})
}
