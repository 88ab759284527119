package pgstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDescribeTellsVerifiedTLSFromTheRest(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	// Any parsable PEM certificate will do; pgx only loads it here.
	if err := os.WriteFile(ca, []byte(testCA), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		url  string
		want Transport
	}{
		{"unix socket", "postgres:///airlock?host=/run/postgresql", TransportUnixSocket},
		{"sslmode disable", "postgres://db.internal/airlock?sslmode=disable", TransportUnverified},
		{"sslmode prefer falls back to plaintext", "postgres://db.internal/airlock?sslmode=prefer", TransportUnverified},
		{"sslmode require checks no certificate", "postgres://db.internal/airlock?sslmode=require", TransportUnverified},
		{"sslmode verify-ca", "postgres://db.internal/airlock?sslmode=verify-ca&sslrootcert=" + ca, TransportVerifiedTLS},
		{"sslmode verify-full", "postgres://db.internal/airlock?sslmode=verify-full&sslrootcert=" + ca, TransportVerifiedTLS},
		{"key=value DSN", "host=db.internal dbname=airlock sslmode=verify-full sslrootcert=" + ca, TransportVerifiedTLS},
		{"one unverified host of several", "postgres://a.internal,b.internal/airlock?sslmode=prefer", TransportUnverified},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Describe(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if d.Transport != tc.want {
				t.Fatalf("Describe(%s).Transport = %s, want %s", tc.url, d.Transport, tc.want)
			}
		})
	}
}

func TestDescribeNeverQuotesThePassword(t *testing.T) {
	d, err := Describe("postgres://issuer:hunter2-secret@db.internal:6543/airlock?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.String(); strings.Contains(got, "hunter2") || got != `database "airlock" on db.internal:6543 as "issuer"` {
		t.Fatalf("String() = %s", got)
	}
	_, err = Describe("postgres://issuer:hunter2-secret@db.internal:notaport/airlock")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("parse error %v: want an error without the password", err)
	}
}

// testCA is a self-signed certificate, only parsed.
const testCA = `-----BEGIN CERTIFICATE-----
MIIBfDCCASGgAwIBAgIULZyy6bquFibCd2IZStAFQyqxIcUwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjEyMDMwOTQxMTZaGA8yMTI2MTEwOTA5
NDExNlowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABImS7oxiXnXpnUAaFahHUr+NJpnIlZw1CabnmA53am81nKWNTa5leptANpg5
+hzeuGkNkrzLIbjZWYbTdefDmoyjUzBRMB0GA1UdDgQWBBT7aVHauH2QjESLcV0O
lWWm849hBzAfBgNVHSMEGDAWgBT7aVHauH2QjESLcV0OlWWm849hBzAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQC6BRm9c4sSL2AqfsQg4qx4v7xM
B5phyzssXDAmvXuBzAIhANxHlZlcZ8+JBuRYDMsK21++ClFO/0ub6B12jInQ9ovW
-----END CERTIFICATE-----`
