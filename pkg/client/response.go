package client

import issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"

// TokenFromResponse returns the Token of a MintTokenResponse from a
// MintToken call made without a TokenSource (a one-off mint), keeping only
// the x-gitlab-* metadata; authorization is rebuilt from the token when it
// is sent. Unlike TokenSource.Token it returns a token that has already
// expired: tests of expiry mint one-second tokens on purpose. It returns an
// Internal *Error for a response without a token or expire_time.
func TokenFromResponse(resp *issuerv1.MintTokenResponse) (*Token, error) {
	return tokenFromResponse(resp)
}
