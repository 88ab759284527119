package modelsvc_test

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// race runs n calls at once and returns their status codes.
func race(n int, call func(i int) error) []codes.Code {
	out := make([]codes.Code, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = status.Code(call(i))
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func count(codes []codes.Code, c codes.Code) int {
	n := 0
	for _, got := range codes {
		if got == c {
			n++
		}
	}
	return n
}

func TestConcurrentCreatesNeverExceedMaxModels(t *testing.T) {
	const limit, racers = 10, 16
	e := testenv.New(t, testenv.Options{MaxModels: limit})
	admin := testenv.Ctx(e.Admin)
	for i := range limit - 1 {
		if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: validModel(fmt.Sprintf("pre-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	got := race(racers, func(i int) error {
		_, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: validModel(fmt.Sprintf("racer-%d", i))})
		return err
	})
	list, err := e.Models().ListModels(admin, &issuerv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetModels()); n != limit || count(got, codes.OK) != 1 || count(got, codes.ResourceExhausted) != racers-1 {
		t.Fatalf("%d racers for the last of %d places: %d won, %d ResourceExhausted; registry holds %d models with MaxModels=%d",
			racers, limit, count(got, codes.OK), count(got, codes.ResourceExhausted), n, limit)
	}
}

func TestConcurrentFallbackEditsNeverCloseACycle(t *testing.T) {
	// Models r0..r7 each get the next one as fallback, all at once: any seven
	// of the edits are fine, all eight form a ring. Exactly one must lose.
	const ring, rounds = 8, 5
	e := testenv.New(t, testenv.Options{})
	admin := testenv.Ctx(e.Admin)
	for round := range rounds {
		name := func(i int) string { return fmt.Sprintf("r%d-%d", round, i%ring) }
		for i := range ring {
			if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: validModel(name(i))}); err != nil {
				t.Fatal(err)
			}
		}
		got := race(ring, func(i int) error {
			m := validModel(name(i))
			m.FallbackModel = name(i + 1)
			_, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: m})
			return err
		})
		linked := 0
		for i := range ring {
			m, err := e.Models().GetModel(admin, &issuerv1.GetModelRequest{Name: name(i)})
			if err != nil {
				t.Fatal(err)
			}
			if m.GetModel().GetFallbackModel() != "" {
				linked++
			}
		}
		if linked == ring || count(got, codes.OK) != ring-1 || count(got, codes.InvalidArgument) != 1 {
			t.Fatalf("round %d: %d racing fallback edits: %d won, %d InvalidArgument; %d of %d models have a fallback (%d = a cycle formed)",
				round, ring, count(got, codes.OK), count(got, codes.InvalidArgument), linked, ring, ring)
		}
	}
}
