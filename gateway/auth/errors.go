package auth

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Messages as the real AI gateway words them. Every signature and claim
// failure shares MsgForbidden so a caller never learns which check failed.
const (
	MsgNoAuthorization    = "No authorization header presented"
	MsgBadAuthorization   = "Invalid authorization header"
	MsgBadAuthType        = "Invalid authentication token type - only OIDC is supported"
	MsgForbidden          = "Forbidden by auth provider"
	MsgInstanceMismatch   = "Header mismatch 'X-Gitlab-Instance-Id'"
	MsgRealmMismatch      = "Header mismatch 'X-Gitlab-Realm'"
	MsgGlobalUserMismatch = "Header mismatch 'X-Gitlab-Global-User-Id'"
	// MsgThrottled: this client address failed authentication too often;
	// it is refused before verification until its allowance refills.
	MsgThrottled = "Too many failed authentication attempts from this address; retry later"
	// MsgUnavailable: the gateway cannot verify anything right now (no key
	// set yet, or the issuer has been unreachable past the staleness
	// bound). Unavailable tells clients to retry, not to get a new token.
	MsgUnavailable = "Token verification is unavailable: signing keys are not loaded; retry later"
)

// Rejection reasons: the label values of the rejection counter. The set is
// fixed so the metric's cardinality is bounded.
const (
	ReasonNoAuthorization    = "no_authorization"
	ReasonBadAuthorization   = "bad_authorization"
	ReasonBadAuthType        = "bad_auth_type"
	ReasonTooLarge           = "token_too_large"
	ReasonMalformed          = "malformed"
	ReasonBadHeader          = "bad_jws_header"
	ReasonBadAlgorithm       = "bad_algorithm"
	ReasonUnknownKey         = "unknown_key"
	ReasonBadSignature       = "bad_signature"
	ReasonNoKeys             = "no_keys"
	ReasonBadIssuer          = "bad_issuer"
	ReasonBadAudience        = "bad_audience"
	ReasonExpired            = "expired"
	ReasonNotYetValid        = "not_yet_valid"
	ReasonLifetime           = "lifetime_too_long"
	ReasonMissingClaim       = "missing_claim"
	ReasonRevoked            = "revoked"
	ReasonInstanceMismatch   = "instance_mismatch"
	ReasonRealmMismatch      = "realm_mismatch"
	ReasonGlobalUserMismatch = "global_user_mismatch"
	ReasonThrottled          = "throttled"
)

// Reasons lists every rejection reason, for pre-initialising metrics.
var Reasons = []string{
	ReasonNoAuthorization, ReasonBadAuthorization, ReasonBadAuthType, ReasonTooLarge,
	ReasonMalformed, ReasonBadHeader, ReasonBadAlgorithm, ReasonUnknownKey, ReasonBadSignature,
	ReasonNoKeys, ReasonBadIssuer, ReasonBadAudience, ReasonExpired, ReasonNotYetValid,
	ReasonLifetime, ReasonMissingClaim, ReasonRevoked, ReasonInstanceMismatch, ReasonRealmMismatch,
	ReasonGlobalUserMismatch, ReasonThrottled,
}

// rejection is why a request was refused. The reason is for metrics and
// logs only; clients see the code and message.
type rejection struct {
	reason string
	code   codes.Code
	msg    string
}

func (r *rejection) Error() string { return r.reason }

// Every rejection the verifier can produce, allocated once so the hot path
// does not allocate on refusal either.
var (
	rejNoAuthorization    = &rejection{ReasonNoAuthorization, codes.Unauthenticated, MsgNoAuthorization}
	rejBadAuthorization   = &rejection{ReasonBadAuthorization, codes.Unauthenticated, MsgBadAuthorization}
	rejBadAuthType        = &rejection{ReasonBadAuthType, codes.Unauthenticated, MsgBadAuthType}
	rejTooLarge           = forbidden(ReasonTooLarge)
	rejMalformed          = forbidden(ReasonMalformed)
	rejBadHeader          = forbidden(ReasonBadHeader)
	rejBadAlgorithm       = forbidden(ReasonBadAlgorithm)
	rejUnknownKey         = forbidden(ReasonUnknownKey)
	rejBadSignature       = forbidden(ReasonBadSignature)
	rejNoKeys             = &rejection{ReasonNoKeys, codes.Unavailable, MsgUnavailable}
	rejBadIssuer          = forbidden(ReasonBadIssuer)
	rejBadAudience        = forbidden(ReasonBadAudience)
	rejExpired            = forbidden(ReasonExpired)
	rejNotYetValid        = forbidden(ReasonNotYetValid)
	rejLifetime           = forbidden(ReasonLifetime)
	rejMissingClaim       = forbidden(ReasonMissingClaim)
	rejRevoked            = forbidden(ReasonRevoked)
	rejInstanceMismatch   = &rejection{ReasonInstanceMismatch, codes.Unauthenticated, MsgInstanceMismatch}
	rejRealmMismatch      = &rejection{ReasonRealmMismatch, codes.Unauthenticated, MsgRealmMismatch}
	rejGlobalUserMismatch = &rejection{ReasonGlobalUserMismatch, codes.Unauthenticated, MsgGlobalUserMismatch}
	rejThrottled          = &rejection{ReasonThrottled, codes.ResourceExhausted, MsgThrottled}
)

func forbidden(reason string) *rejection {
	return &rejection{reason, codes.Unauthenticated, MsgForbidden}
}

// toStatus is the one place where a verification failure becomes what the
// client sees.
func (r *rejection) toStatus() error { return status.Error(r.code, r.msg) }
