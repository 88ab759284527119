package ctl

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/pkg/devpki"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

func healthcheck(c *cli, fs *flag.FlagSet) func(context.Context) error {
	addr := fs.String("addr", "", "gRPC address to check (default: the --gateway address)")
	service := fs.String("service", "", "service name to check (default: the whole server)")
	return func(ctx context.Context) error {
		target := *addr
		if target == "" {
			target = c.g.gateway
		}
		var conf *tls.Config
		if !c.g.plaintext {
			var err error
			if conf, err = tlsconfig.Client(c.g.ca, c.g.cert, c.g.key, ""); err != nil {
				return usagef("%v", err)
			}
		}
		deadline, _ := ctx.Deadline()
		if err := healthprobe.Check(ctx, target, *service, conf, time.Until(deadline)); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		_, err := fmt.Fprintln(c.io.Stdout, "SERVING")
		return err
	}
}

func certCA(c *cli, fs *flag.FlagSet) func(context.Context) error {
	out := fs.String("out", "", "directory to write "+devpki.CACertFile+" and "+devpki.CAKeyFile+" to")
	validity := fs.Duration("validity", 365*24*time.Hour, "CA certificate lifetime")
	name := fs.String("name", "airlock-dev-ca", "CA common name")
	return func(context.Context) error {
		if *out == "" {
			return usagef("--out is required")
		}
		if err := devpki.CreateCAFiles(*out, *name, *validity); err != nil {
			return certError(err)
		}
		_, err := fmt.Fprintf(c.io.Stdout, "wrote %s and %s\n", filepath.Join(*out, devpki.CACertFile), filepath.Join(*out, devpki.CAKeyFile))
		return err
	}
}

func certIssue(c *cli, fs *flag.FlagSet) func(context.Context) error {
	caDir := fs.String("ca-dir", "", "directory holding the CA (from cert ca)")
	name := fs.String("name", "", "service name: certificate common name and file names")
	var dns, ips stringList
	fs.Var(&dns, "dns", "DNS names, comma-separated or repeated")
	fs.Var(&ips, "ip", "IP addresses, comma-separated or repeated")
	out := fs.String("out", "", "directory to write <name>.crt and <name>.key to")
	validity := fs.Duration("validity", 90*24*time.Hour, "certificate lifetime")
	return func(context.Context) error {
		switch {
		case *caDir == "":
			return usagef("--ca-dir is required")
		case *name == "":
			return usagef("--name is required")
		case *out == "":
			return usagef("--out is required")
		}
		parsed := make([]net.IP, 0, len(ips))
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil {
				return usagef("--ip %q is not an IP address", s)
			}
			parsed = append(parsed, ip)
		}
		if err := devpki.IssueFiles(*caDir, *out, *name, dns, parsed, *validity); err != nil {
			return certError(err)
		}
		_, err := fmt.Fprintf(c.io.Stdout, "wrote %s and %s\n", filepath.Join(*out, devpki.CertFile(*name)), filepath.Join(*out, devpki.KeyFile(*name)))
		return err
	}
}

// certError gives devpki's errors their codes.
func certError(err error) error {
	switch {
	case errors.Is(err, devpki.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, devpki.ErrInvalidName), errors.Is(err, devpki.ErrInvalidValidity):
		return usagef("%v", err)
	case errors.Is(err, devpki.ErrInvalidCA):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
