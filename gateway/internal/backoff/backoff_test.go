package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextStaysWithinBoundsAndGrows(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for i := 0; i < 50; i++ {
		ceil := min(b.Min<<min(i, 30), b.Max)
		d := b.Next()
		if d < b.Min/2 || d > ceil {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i, d, b.Min/2, ceil)
		}
	}
	b.Reset()
	if d := b.Next(); d > b.Min {
		t.Fatalf("after Reset, wait = %v, want at most Min", d)
	}
}

func TestSleepStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep reported a full wait on a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep cut a short wait")
	}
}
