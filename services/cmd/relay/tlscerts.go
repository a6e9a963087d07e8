package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// tlsCertsCmd makes a private CA and a server certificate for the NATS
// server (deploy/compose.tls.yml, scripts/compose-tls.sh): clients verify
// the server against ca.pem. Existing files are kept.
func tlsCertsCmd() *cobra.Command {
	var dir string
	var hosts []string
	var ips []net.IP
	var days int
	c := &cobra.Command{
		Use:    "tls-certs",
		Short:  "create ca.pem, ca.key, server.pem and server.key for the NATS server's TLS (kept if present)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(hosts) == 0 && len(ips) == 0 {
				return errors.New("tls-certs: give the server's names (--host nats) or addresses (--ip)")
			}
			if _, err := os.Stat(filepath.Join(dir, "server.pem")); err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "kept the certificates in %s\n", dir)
				return nil
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			valid := time.Duration(days) * 24 * time.Hour
			ca, caKey, err := newCert(nil, nil, &x509.Certificate{Subject: pkix.Name{CommonName: "REDCap Relay NATS CA"},
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, 2*valid)
			if err != nil {
				return err
			}
			srv, srvKey, err := newCert(ca, caKey, &x509.Certificate{Subject: pkix.Name{CommonName: firstOr(hosts, "nats")},
				DNSNames: hosts, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, valid)
			if err != nil {
				return err
			}
			for name, block := range map[string]*pem.Block{
				"ca.pem": {Type: "CERTIFICATE", Bytes: ca.Raw}, "server.pem": {Type: "CERTIFICATE", Bytes: srv.Raw},
				"ca.key": keyBlock(caKey), "server.key": keyBlock(srvKey),
			} {
				if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created ca.pem, ca.key, server.pem and server.key in %s for %v %v (valid %d days)\n", dir, hosts, ips, days)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "out", "tls", "folder for the files")
	c.Flags().StringSliceVar(&hosts, "host", nil, "DNS name clients use for the server (repeatable)")
	c.Flags().IPSliceVar(&ips, "ip", nil, "IP address clients use for the server (repeatable)")
	c.Flags().IntVar(&days, "days", 825, "validity of the server certificate (the CA's is twice as long)")
	return c
}

// newCert signs tmpl with parent (self-signed when parent is nil).
func newCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate, valid time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(valid)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func keyBlock(k *ecdsa.PrivateKey) *pem.Block {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func firstOr(xs []string, d string) string {
	if len(xs) > 0 {
		return xs[0]
	}
	return d
}
