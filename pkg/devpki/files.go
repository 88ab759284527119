package devpki

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names in a devpki directory. `airlockctl cert ca` and `airlockctl
// cert issue`, the compose suite and the Kubernetes examples all rely on
// this layout, so it lives here, in one place.
const (
	// CACertFile is the CA certificate in the CA directory (mode 0644).
	CACertFile = "ca.crt"
	// CAKeyFile is the CA private key in the CA directory (mode 0600).
	CAKeyFile = "ca.key"
)

// ErrExists means CreateCAFiles found a CA already in place.
var ErrExists = errors.New("devpki: CA already exists")

// CertFile is the certificate file name Issue's output for name is written
// to by IssueFiles: "<name>.crt".
func CertFile(name string) string { return name + ".crt" }

// KeyFile is the private key file name for name written by IssueFiles:
// "<name>.key".
func KeyFile(name string) string { return name + ".key" }

// CreateCAFiles creates a CA with NewCA and writes it to dir (created 0700
// if missing) as CACertFile (0644) and CAKeyFile (0600). It refuses with
// ErrExists if either file exists, because replacing a CA silently breaks
// every certificate already issued from it.
func CreateCAFiles(dir, commonName string, validity time.Duration) error {
	for _, f := range []string{CACertFile, CAKeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, f))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("devpki: %w", err)
		}
	}
	certPEM, keyPEM, err := NewCA(commonName, validity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	// Key first: a certificate without its key is useless, a key without
	// its certificate is at least not mistaken for a complete CA.
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, CACertFile), certPEM, 0o644)
}

// IssueFiles reads the CA from caDir (as CreateCAFiles wrote it), issues a
// certificate for name with Issue, and writes CertFile(name) (0644) and
// KeyFile(name) (0600) into outDir (created 0700 if missing), replacing an
// earlier certificate for the same name.
func IssueFiles(caDir, outDir, name string, dnsNames []string, ips []net.IP, validity time.Duration) error {
	caCert, err := os.ReadFile(filepath.Join(caDir, CACertFile))
	if err != nil {
		return fmt.Errorf("devpki: read CA certificate: %w", err)
	}
	caKey, err := os.ReadFile(filepath.Join(caDir, CAKeyFile))
	if err != nil {
		return fmt.Errorf("devpki: read CA key: %w", err)
	}
	certPEM, keyPEM, err := Issue(caCert, caKey, name, dnsNames, ips, validity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(outDir, KeyFile(name)), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(outDir, CertFile(name)), certPEM, 0o644)
}

// writeFileAtomic writes through a temporary file and a rename so a server
// reloading its certificate never reads half a file, and a key file never
// exists with a wider mode than perm.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // no-op after a successful rename
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devpki: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devpki: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devpki: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	return nil
}
