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
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certsCmd makes a private CA and one certificate for the embedded servers, named as
// cert-manager names them (ca.crt, tls.crt, tls.key), so that TLS needs no openssl. Files
// that exist are kept: running it again is safe.
func certsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("certs", "--dir DIR [--hosts localhost,127.0.0.1] [--days 365]",
		"Make a CA (unless DIR holds one) and a TLS certificate signed by it for the embedded servers.", stdout, stderr)
	dir := fs.String("dir", "", "directory for ca.crt, ca.key, tls.crt and tls.key (required)")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma separated DNS names and IPs the certificate is valid for")
	days := fs.Int("days", 365, "validity in days")
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if *dir == "" || len(pos) > 0 {
		fmt.Fprintln(stderr, "usage: coordinator certs --dir DIR [--hosts localhost,127.0.0.1] [--days 365]")
		return 2
	}
	made, err := makeCerts(*dir, splitList(*hosts), time.Duration(*days)*24*time.Hour)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator certs: %v\n", err)
		return 1
	}
	for _, m := range made {
		fmt.Fprintln(stdout, m)
	}
	return 0
}

// makeCerts writes the CA (unless ca.crt and ca.key exist) and a certificate signed by it
// for hosts, usable for server and client authentication: a route is both. It returns what
// it did, one line per file.
func makeCerts(dir string, hosts []string, validity time.Duration) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	var done []string
	caCert, caKey, err := loadCA(p("ca.crt"), p("ca.key"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: "coordinator CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		if caCert, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		if err := writePEM(p("ca.key"), "EC PRIVATE KEY", mustMarshalKey(caKey), 0o600); err != nil {
			return nil, err
		}
		if err := writePEM(p("ca.crt"), "CERTIFICATE", der, 0o644); err != nil {
			return nil, err
		}
		done = append(done, "wrote "+p("ca.crt")+" and "+p("ca.key"))
	case err != nil:
		return nil, err
	default:
		done = append(done, "kept "+p("ca.crt"))
	}
	if _, err := os.Stat(p("tls.crt")); err == nil {
		return append(done, "kept "+p("tls.crt")), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "coordinator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p("tls.key"), "EC PRIVATE KEY", mustMarshalKey(key), 0o600); err != nil {
		return nil, err
	}
	if err := writePEM(p("tls.crt"), "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return append(done, fmt.Sprintf("wrote %s and %s for %v", p("tls.crt"), p("tls.key"), hosts)), nil
}

func loadCA(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s exists but its key: %w (make both again: remove %s)", certFile, err, certFile)
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: an EC key is expected (as this command writes): %w", keyFile, err)
	}
	return cert, key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func mustMarshalKey(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return b
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
