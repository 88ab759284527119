package auth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFailedAuthenticationsAreBoundedPerClient(t *testing.T) {
	loadKeys(t)
	keys := newFakeKeys(kRSA)
	clock := testNow
	fl := NewFailureLimiter(3, 0, func() time.Time { return clock })
	v, log := newTestVerifier(t, keys, nil, func(c *Config) { c.Failures = fl })
	good := goodMD(mint(t, kRSA, goodClaims()))
	bad := goodMD(mint(t, kRogue, goodClaims()))
	ctx := context.Background()

	// Authenticated calls spend nothing.
	for range 10 {
		if _, err := v.VerifyFrom(ctx, "10.0.0.1", good); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := v.VerifyFrom(ctx, "10.0.0.1", bad); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("failure %d: %v, want Unauthenticated", i+1, err)
		}
	}
	lookups := keys.lookups
	_, err := v.VerifyFrom(ctx, "10.0.0.1", bad)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != MsgThrottled || log.last() != ReasonThrottled {
		t.Fatalf("fourth failure: %v (%s), want ResourceExhausted %q", err, log.last(), MsgThrottled)
	}
	if keys.lookups != lookups {
		t.Fatal("a throttled client's token was still verified")
	}
	// Another client is not affected. The throttled address may still use
	// a token already verified (a legitimate user behind the same NAT), but
	// a new one needs verifying and is refused until the allowance refills
	// (one per 20 s here).
	if _, err := v.VerifyFrom(ctx, "10.0.0.2", good); err != nil {
		t.Fatalf("another client: %v", err)
	}
	if _, err := v.VerifyFrom(ctx, "10.0.0.1", good); err != nil {
		t.Fatalf("throttled client with an already verified token: %v", err)
	}
	fresh := goodMD(mint(t, kRSA, with(goodClaims(), "jti", "fresh")))
	if _, err := v.VerifyFrom(ctx, "10.0.0.1", fresh); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("throttled client with a token to verify: %v", err)
	}
	clock = clock.Add(21 * time.Second)
	if _, err := v.VerifyFrom(ctx, "10.0.0.1", fresh); err != nil {
		t.Fatalf("after refilling: %v", err)
	}
	// Unknown client, no limit (Verify without an address).
	for range 5 {
		if _, err := v.Verify(ctx, bad); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Verify without a client: %v", err)
		}
	}
}

func TestFailureLimiterMemoryIsBounded(t *testing.T) {
	fl := NewFailureLimiter(1, 8, func() time.Time { return testNow })
	for i := range 1000 {
		fl.Failed(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if n := fl.size(); n > 8 {
			t.Fatalf("%d clients remembered, bound 8", n)
		}
	}
	if !fl.Blocked("10.0.3.231") {
		t.Fatal("the latest client was forgotten at once")
	}
	off := NewFailureLimiter(0, 0, nil)
	off.Failed("x")
	if off != nil || off.Blocked("x") {
		t.Fatal("a zero rate must disable the limiter")
	}
}
