// Package client is the Go SDK for tools that call Airlock: a TokenSource
// that mints self-issued tokens through the issuer with a personal access
// token and refreshes them before they expire, gRPC per-RPC credentials that
// attach the token and the x-gitlab-* metadata to every call, and a typed
// completion client whose errors carry the gRPC code and the Retry-After
// hint.
//
// Dial wires all of it from Options, or from the environment variables
// airlockctl reads (OptionsFromEnv):
//
//	opts, err := client.OptionsFromEnv(os.LookupEnv) // AIRLOCK_TOKEN_FILE, AIRLOCK_PLAINTEXT, AIRLOCK_CA, ...
//	conn, err := client.Dial(opts)
//	defer conn.Close()
//	s := conn.Stream(ctx, "duo_chat", client.User("hello"))
//
// By hand, a tool needs three values: a connection to the issuer dialled
// with PATCredentials, a TokenSource over it, and a connection to the
// gateway dialled with NewPerRPCCredentials(source):
//
//	tlsCreds := credentials.NewTLS(tlsConf) // e.g. from pkg/tlsconfig.Client
//	ic, _ := grpc.NewClient("issuer:9440", grpc.WithTransportCredentials(tlsCreds),
//		grpc.WithPerRPCCredentials(client.PATCredentials(pat)))
//	ts := client.NewTokenSource(issuerv1.NewTokenServiceClient(ic), client.WithFeatures("duo_chat"))
//	defer ts.Close()
//	gc, _ := grpc.NewClient("gateway:9450", grpc.WithTransportCredentials(tlsCreds),
//		grpc.WithPerRPCCredentials(client.NewPerRPCCredentials(ts)))
//	s := client.New(gc).Stream(ctx, "duo_chat", client.User("hello"))
//	defer s.Close()
//	for s.Next() {
//		fmt.Print(s.Text())
//	}
//	var e *client.Error
//	if errors.As(s.Err(), &e) && e.Code == codes.ResourceExhausted {
//		time.Sleep(e.RetryAfter) // then retry
//	}
//
// The credentials refuse to be used on a connection without transport
// security (grpc.NewClient fails) unless built with AllowInsecure, which is
// for loopback development servers only.
//
// Package clienttest has in-process fakes of the issuer and the gateway for
// the tests of tools built on this package.
//
// Nothing in this package logs, and no error or String method includes a
// personal access token or a minted token.
package client
