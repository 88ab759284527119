package pgstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// BenchmarkRecordToken is the write every mint makes, from many callers at
// once (note: pgtest's server runs with fsync off).
func BenchmarkRecordToken(b *testing.B) {
	s, err := pgstore.Open(context.Background(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	exp := time.Now().Add(time.Hour)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.RecordToken(context.Background(), store.IssuedToken{JTI: fmt.Sprint(n.Add(1)), UserID: 1, ExpireTime: exp}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
