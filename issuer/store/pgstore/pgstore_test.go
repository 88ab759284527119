package pgstore_test

import (
	"context"
	"os"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
	"github.com/airlock-dev/airlock/issuer/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

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
