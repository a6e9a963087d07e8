package heal

import (
	"crypto/md5"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// ManifestEntry is one file of the package.
type ManifestEntry struct {
	File        string // relative to the package folder, '/'-separated
	Bytes       int64
	MD5         string
	Description string
}

// countingFile writes a package file and hashes it on the way (MD5: what
// HEAL's repositories ask the manifest for).
type countingFile struct {
	f     *os.File
	h     hash.Hash
	n     int64
	entry ManifestEntry
}

func create(dir, rel, desc string) (*countingFile, error) {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return &countingFile{f: f, h: md5.New(), entry: ManifestEntry{File: rel, Description: desc}}, nil
}

func (c *countingFile) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	c.h.Write(b[:n])
	c.n += int64(n)
	return n, err
}

// Close finishes the file and returns its manifest entry.
func (c *countingFile) Close() (ManifestEntry, error) {
	if err := c.f.Sync(); err != nil {
		c.f.Close()
		return ManifestEntry{}, err
	}
	if err := c.f.Close(); err != nil {
		return ManifestEntry{}, err
	}
	c.entry.Bytes, c.entry.MD5 = c.n, hex.EncodeToString(c.h.Sum(nil))
	return c.entry, nil
}

// writeFile writes one package file through fill.
func writeFile(dir, rel, desc string, fill func(io.Writer) error) (ManifestEntry, error) {
	cf, err := create(dir, rel, desc)
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("%s: %w", rel, err)
	}
	if err := fill(cf); err != nil {
		cf.f.Close()
		return ManifestEntry{}, fmt.Errorf("%s: %w", rel, err)
	}
	e, err := cf.Close()
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("%s: %w", rel, err)
	}
	return e, nil
}

var manifestHeader = []string{"file", "bytes", "md5", "description"}

func writeManifest(w io.Writer, es []ManifestEntry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(manifestHeader); err != nil {
		return err
	}
	for _, e := range es {
		if err := cw.Write([]string{e.File, strconv.FormatInt(e.Bytes, 10), e.MD5, e.Description}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// fileMD5 hashes a file on disk.
func fileMD5(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
