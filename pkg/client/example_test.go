package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/client/clienttest"
)

// fakes starts an in-process issuer and gateway over TLS; a real tool dials
// the issuer (:9440) and the gateway (:9450) instead.
func fakes() (*clienttest.Server, *clienttest.Gateway) {
	iss := clienttest.NewIssuer(nil)
	iss.AddUser("glpat-demo")
	gw := clienttest.NewGateway(iss)
	srv, err := clienttest.NewServer(func(s grpc.ServiceRegistrar) {
		iss.Register(s)
		gw.Register(s)
	}, clienttest.WithTLS())
	if err != nil {
		panic(err)
	}
	return srv, gw
}

// The whole use: a PAT-authenticated issuer connection, a token source that
// mints and refreshes tokens, and a gateway connection that sends the token
// and the x-gitlab-* metadata with every call.
func Example() {
	srv, _ := fakes()
	defer srv.Close()

	issuerConn, _ := srv.Dial(grpc.WithPerRPCCredentials(client.PATCredentials("glpat-demo")))
	defer issuerConn.Close()
	ts := client.NewTokenSource(issuerv1.NewTokenServiceClient(issuerConn), client.WithFeatures("duo_chat"))
	defer ts.Close()
	gatewayConn, _ := srv.Dial(grpc.WithPerRPCCredentials(client.NewPerRPCCredentials(ts)))
	defer gatewayConn.Close()

	s := client.New(gatewayConn).Stream(context.Background(), "duo_chat", client.User("Say hello"))
	defer s.Close()
	for s.Next() {
		fmt.Print(s.Text())
	}
	done, err := s.Done() // the error that ended the stream, if any
	if err != nil {
		fmt.Println("\nerror:", err)
		return
	}
	fmt.Printf("\nfinish=%s model=%s\n", done.Reason(), done.Model)
	// Output:
	// Hello from the fake gateway.
	// finish=stop model=fake-model
}

// Errors carry the gRPC code and the server's Retry-After hint.
func ExampleError() {
	srv, gw := fakes()
	defer srv.Close()
	gw.FailWith(clienttest.RateLimited(7 * time.Second))

	issuerConn, _ := srv.Dial(grpc.WithPerRPCCredentials(client.PATCredentials("glpat-demo")))
	defer issuerConn.Close()
	ts := client.NewTokenSource(issuerv1.NewTokenServiceClient(issuerConn))
	defer ts.Close()
	gatewayConn, _ := srv.Dial(grpc.WithPerRPCCredentials(client.NewPerRPCCredentials(ts)))
	defer gatewayConn.Close()

	_, err := client.New(gatewayConn).Complete(context.Background(), "duo_chat", client.User("hi"))
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, "-", e.Message, "- retry after", e.RetryAfter)
	}
	// Output:
	// ResourceExhausted - model server rate limit exceeded - retry after 7s
}

// Deltas turns a stream into a range-over-func iterator.
func ExampleStream_Deltas() {
	srv, _ := fakes()
	defer srv.Close()
	issuerConn, _ := srv.Dial(grpc.WithPerRPCCredentials(client.PATCredentials("glpat-demo")))
	defer issuerConn.Close()
	ts := client.NewTokenSource(issuerv1.NewTokenServiceClient(issuerConn))
	defer ts.Close()
	gatewayConn, _ := srv.Dial(grpc.WithPerRPCCredentials(client.NewPerRPCCredentials(ts)))
	defer gatewayConn.Close()

	s := client.New(gatewayConn).Stream(context.Background(), "code_generations", client.User("write hello world"))
	for text, err := range s.Deltas() {
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Printf("%q\n", text)
	}
	// Output:
	// "Hello "
	// "from "
	// "the "
	// "fake "
	// "gateway."
}

// Dial wires everything from Options (or OptionsFromEnv, the variables
// airlockctl reads): TLS or plaintext, the issuer connection with the
// personal access token, the token source and the gateway connection.
func ExampleDial() {
	iss := clienttest.NewIssuer(nil)
	iss.AddUser("glpat-demo")
	srv, err := clienttest.NewServer(func(s grpc.ServiceRegistrar) {
		iss.Register(s)
		clienttest.NewGateway(iss).Register(s)
	}, clienttest.WithTCP()) // plaintext on loopback, as `make run` serves
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	conn, err := client.Dial(client.Options{
		IssuerAddr: srv.Addr(), GatewayAddr: srv.Addr(), Plaintext: true,
		PAT: "glpat-demo", Features: []string{"duo_chat"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	c, err := conn.Complete(context.Background(), "duo_chat", client.User("Say hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Text, c.Done.Reason())
	// Output:
	// Hello from the fake gateway. stop
}
