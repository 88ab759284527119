package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
	"github.com/airlock-dev/airlock/issuer/store/storetest"
)

// TestMain runs the tests on one throwaway server and fails them if any
// goroutine (a pool's, goose's) outlives them.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "pgstore: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// open returns a store on a fresh database.
func open(t *testing.T) (*pgstore.Store, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	s, err := pgstore.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return s, url
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := open(t)
		return s
	})
}
