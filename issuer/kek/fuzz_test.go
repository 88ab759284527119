package kek_test

import (
	"bytes"
	"testing"

	"github.com/airlock-dev/airlock/issuer/kek"
)

// FuzzOpen: arbitrary blobs never panic, and only a genuine seal (here:
// of "secret" under "aad") ever opens. The seed is sealed in each fuzz
// process with a fresh nonce, so compare plaintexts, not blobs.
func FuzzOpen(f *testing.F) {
	k, _ := kek.New(bytes.Repeat([]byte{3}, kek.Size))
	good, _ := k.Seal([]byte("secret"), []byte("aad"))
	f.Add(good, []byte("aad"))
	f.Add([]byte{1}, []byte(""))
	f.Add([]byte{}, []byte("aad"))
	f.Fuzz(func(t *testing.T, blob, aad []byte) {
		pt, err := k.Open(blob, aad)
		if err == nil && (!bytes.Equal(pt, []byte("secret")) || !bytes.Equal(aad, []byte("aad"))) {
			t.Fatalf("forged blob decrypted to %q", pt)
		}
	})
}

// FuzzParse: arbitrary text never panics; accepted keys are 32 bytes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "", "%%", " AQEB \n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := kek.Parse(s)
		if err == nil && k == nil {
			t.Fatal("nil KEK without error")
		}
	})
}
