package kek_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/airlock-dev/airlock/issuer/kek"
)

func TestSealOpen(t *testing.T) {
	k, err := kek.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := kek.New(bytes.Repeat([]byte{8}, 32))
	secret := []byte("sk-very-secret")
	sealed, err := k.Seal(secret, []byte("model:a"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed blob contains the plaintext")
	}
	got, err := k.Open(sealed, []byte("model:a"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, tc := range map[string]struct {
		k    *kek.KEK
		blob []byte
		aad  string
	}{
		"other record's aad is refused": {k, sealed, "model:b"},
		"wrong kek is refused":          {other, sealed, "model:a"},
		"tampered blob is refused":      {k, tampered, "model:a"},
		"truncated blob is refused":     {k, sealed[:10], "model:a"},
		"empty blob is refused":         {k, nil, "model:a"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.k.Open(tc.blob, []byte(tc.aad)); !errors.Is(err, kek.ErrOpen) {
				t.Fatalf("err = %v, want ErrOpen", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	file := filepath.Join(dir, "kek.txt")
	if err := os.WriteFile(file, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.txt")
	if err := os.WriteFile(loose, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		file, env, dev   string
		wantErr, wantMsg bool
	}{
		{name: "file wins", file: file, env: "garbage"},
		{name: "env when no file", env: good},
		{name: "missing everywhere is a clear error", wantErr: true, wantMsg: true},
		{name: "short key is refused", env: base64.StdEncoding.EncodeToString([]byte("short")), wantErr: true},
		{name: "non-base64 is refused", env: "%%%", wantErr: true},
		{name: "world-readable file is refused", file: loose, wantErr: true},
		{name: "dev generates one", dev: filepath.Join(dir, "data")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kek.Load(tc.file, tc.env, tc.dev)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantMsg && !errors.Is(err, kek.ErrMissing) {
				t.Fatalf("err = %v, want ErrMissing", err)
			}
		})
	}
	// The dev key is 0600 and stable across starts.
	fi, err := os.Stat(filepath.Join(dir, "data", "kek"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev kek: %v, mode %v", err, fi.Mode())
	}
	a, _ := kek.Load("", "", filepath.Join(dir, "data"))
	sealed, _ := a.Seal([]byte("x"), nil)
	b, _ := kek.Load("", "", filepath.Join(dir, "data"))
	if _, err := b.Open(sealed, nil); err != nil {
		t.Fatal("dev kek changed between loads")
	}
}
