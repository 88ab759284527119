package pgstore

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transport says how the connection to the database is protected.
type Transport string

// Transports.
const (
	// TransportUnixSocket: a local unix socket (no network).
	TransportUnixSocket Transport = "unix-socket"
	// TransportVerifiedTLS: TLS with the server's certificate verified
	// (sslmode verify-ca or verify-full, or require with sslrootcert).
	TransportVerifiedTLS Transport = "verified-tls"
	// TransportUnverified: plaintext, or TLS without verifying the server
	// (sslmode disable, allow, prefer, or require without sslrootcert): an
	// attacker on the path can read or change what the issuer stores.
	TransportUnverified Transport = "unverified"
)

// Description names a database without its credentials.
type Description struct {
	Database, Host, User string
	Port                 uint16
	Transport            Transport
}

// String implements fmt.Stringer, e.g. `database "airlock" on db:5432 as "issuer"`.
func (d Description) String() string {
	return fmt.Sprintf("database %q on %s:%d as %q", d.Database, d.Host, d.Port, d.User)
}

// Describe parses url as Open does and describes where it leads. Errors
// are pgx's parse errors, which mask the password.
func Describe(url string) (Description, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return Description{}, err
	}
	return describeConfig(cfg), nil
}

func describeConfig(c *pgconn.Config) Description {
	d := Description{Database: c.Database, Host: c.Host, User: c.User, Port: c.Port, Transport: TransportVerifiedTLS}
	if strings.HasPrefix(c.Host, "/") {
		d.Transport = TransportUnixSocket
		return d
	}
	verified := func(t *tls.Config) bool {
		return t != nil && (!t.InsecureSkipVerify || t.VerifyPeerCertificate != nil)
	}
	if !verified(c.TLSConfig) {
		d.Transport = TransportUnverified
	}
	for _, f := range c.Fallbacks {
		if !strings.HasPrefix(f.Host, "/") && !verified(f.TLSConfig) {
			d.Transport = TransportUnverified
		}
	}
	return d
}
