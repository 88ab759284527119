package heapfloor

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	tests := []struct {
		name        string
		live, floor uint64
		base, want  int
	}{
		{"small heap: goal raised to the floor", 4 * mb, 32 * mb, 100, 700},
		{"rounds up so the goal is not under the floor", 5 * mb, 32 * mb, 100, 540},
		{"smaller heap: the scaled 4 MB minimum gives the floor", 3 * mb, 32 * mb, 100, 800},
		{"half the floor: base already reaches it", 16 * mb, 32 * mb, 100, 100},
		{"above the floor: base", 64 * mb, 32 * mb, 100, 100},
		{"a higher base that reaches the floor is kept", 4 * mb, 32 * mb, 800, 800},
		{"GOGC off stays off", 4 * mb, 32 * mb, -1, -1},
		{"no live heap measured yet: the floor by the minimum", 0, 32 * mb, 100, 800},
		{"a nearly empty heap is capped the same way", 1, 32 * mb, 100, 800},
		{"a floor under the 4 MB minimum: base", 1 * mb, 2 * mb, 100, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percent(tt.live, tt.floor, tt.base); got != tt.want {
				t.Fatalf("Percent(%d, %d, %d) = %d, want %d", tt.live, tt.floor, tt.base, got, tt.want)
			}
		})
	}
}

var sink []byte

// churn allocates n bytes of short-lived garbage and returns how many
// collections ran meanwhile.
func churn(n int) uint32 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n/1024; i++ {
		sink = make([]byte, 1024)
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

func TestStartMakesCollectionsRarerAndStopRestores(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	runtime.GC()
	without := churn(256 << 20)

	stop := Start(128 << 20)
	runtime.GC() // a first cycle under the floor sets GOGC for the live heap
	with := churn(256 << 20)
	stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after stop GOGC = %d, want the 100 found at Start", got)
	}
	t.Logf("collections while allocating 256 MB: %d without a floor, %d with a 128 MB floor", without, with)
	if with*4 > without {
		t.Fatalf("a 128 MB floor left %d collections against %d without: want at most a quarter", with, without)
	}
}

func TestStartDoesNothingWithoutAFloorOrWithGCOff(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	Start(0)()
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Fatalf("floor 0 changed GOGC to %d", got)
	}
	stop := Start(128 << 20) // GOGC is off now
	runtime.GC()
	runtime.GC()
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("with GOGC off, Start set it to %d", got)
	}
	stop()
}
