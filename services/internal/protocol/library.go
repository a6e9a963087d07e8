package protocol

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteLibrary writes the built-in library (heal-adult.yaml and its
// dictionaries) into dir, for a network that wants to edit it: point the
// network file's protocol: at dir/heal-adult.yaml. Existing files are left
// alone unless force is set; it returns the files written.
func WriteLibrary(dir string, force bool) ([]string, error) {
	lib := LibraryFS()
	var names []string
	err := fs.WalkDir(lib, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !force {
		var exist []string
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(n))); err == nil {
				exist = append(exist, filepath.Join(dir, filepath.FromSlash(n)))
			}
		}
		if len(exist) > 0 {
			return nil, fmt.Errorf("%d file(s) already exist, e.g. %s: give --force to overwrite them", len(exist), exist[0])
		}
	}
	var written []string
	for _, n := range names {
		b, err := fs.ReadFile(lib, n)
		if err != nil {
			return written, err
		}
		out := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return written, errors.Join(fmt.Errorf("write %s", out), err)
		}
		written = append(written, out)
	}
	return written, nil
}
