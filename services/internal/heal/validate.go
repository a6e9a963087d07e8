package heal

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/services/internal/heal/vlmd"
)

// Validate checks a package folder: both dictionaries against HEAL's
// official schemas (the JSON schema and the CSV template, read as HEAL
// reads a CSV), the two dictionaries against each other, the data file's
// header against the dictionary, and every file against the manifest. It
// lists every violation; the error is for a package it cannot read at all.
func Validate(dir string) ([]string, error) {
	v, err := vlmd.NewValidator()
	if err != nil {
		return nil, err
	}
	var out []string
	add := func(file, format string, a ...any) { out = append(out, file+": "+fmt.Sprintf(format, a...)) }

	manifest, err := readManifest(filepath.Join(dir, FileManifest))
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{FileManifest: true}
	var dataFiles []string
	for _, e := range manifest {
		listed[e.File] = true
		sum, n, err := fileMD5(filepath.Join(dir, filepath.FromSlash(e.File)))
		switch {
		case err != nil:
			add(FileManifest, "%s: %v", e.File, unwrapPath(err))
		case n != e.Bytes:
			add(FileManifest, "%s has %d bytes, the manifest says %d", e.File, n, e.Bytes)
		case sum != e.MD5:
			add(FileManifest, "%s has MD5 %s, the manifest says %s", e.File, sum, e.MD5)
		}
		if strings.HasPrefix(e.File, "data/") {
			dataFiles = append(dataFiles, e.File)
		}
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel = filepath.ToSlash(rel); !listed[rel] {
			add(FileManifest, "%s is in the package but not in the manifest", rel)
		}
		return nil
	})
	for _, f := range []string{FileDictJSON, FileDictCSV, FileReadme, FileChecklist} {
		if !listed[f] {
			add(FileManifest, "%s is missing from the package", f)
		}
	}
	if len(dataFiles) != 1 {
		add(FileManifest, "expected one data file under data/, found %d", len(dataFiles))
	}

	jsonNames, err := checkJSON(v, filepath.Join(dir, FileDictJSON), func(s string) { add(FileDictJSON, "%s", s) })
	if err != nil {
		add(FileDictJSON, "%v", err)
	}
	csvNames, err := checkCSV(v, filepath.Join(dir, FileDictCSV), func(s string) { add(FileDictCSV, "%s", s) })
	if err != nil {
		add(FileDictCSV, "%v", err)
	}
	if jsonNames != nil && csvNames != nil && strings.Join(jsonNames, ",") != strings.Join(csvNames, ",") {
		add(FileDictCSV, "its fields differ from %s's (%d and %d fields, or another order)", FileDictJSON, len(csvNames), len(jsonNames))
	}
	seen := map[string]bool{}
	for _, n := range jsonNames {
		if seen[n] {
			add(FileDictJSON, "field %s is described twice", n)
		}
		seen[n] = true
	}
	for _, df := range dataFiles {
		header, err := dataHeader(filepath.Join(dir, filepath.FromSlash(df)))
		if err != nil {
			add(df, "%v", err)
			continue
		}
		if jsonNames != nil {
			checkColumns(df, header, jsonNames, add)
		}
	}
	return out, nil
}

// checkColumns: every column of the data is a field of the dictionary and
// vice versa, in the same order.
func checkColumns(file string, header, names []string, add func(string, string, ...any)) {
	inDict := map[string]bool{}
	for _, n := range names {
		inDict[n] = true
	}
	inData := map[string]bool{}
	for _, h := range header {
		inData[h] = true
		if !inDict[h] {
			add(file, "column %s is not a field of the dictionary", h)
		}
	}
	for _, n := range names {
		if !inData[n] {
			add(file, "dictionary field %s is not a column of the data", n)
		}
	}
	if len(header) == len(names) && strings.Join(header, ",") != strings.Join(names, ",") {
		add(file, "its columns are not in the dictionary's order")
	}
}

func checkJSON(v *vlmd.Validator, path string, add func(string)) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	vs, err := v.JSON(strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	for _, x := range vs {
		add(x.String())
	}
	var d struct {
		Fields []struct {
			Name string `json:"name"`
		} `json:"fields"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil // the schema violations say why
	}
	names := make([]string, len(d.Fields))
	for i, f := range d.Fields {
		names[i] = f.Name
	}
	return names, nil
}

func checkCSV(v *vlmd.Validator, path string, add func(string)) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	vs, err := v.CSV(f)
	if err != nil {
		return nil, err
	}
	for _, x := range vs {
		add(x.String())
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	rows, err := vlmd.ReadCSVLikeHEAL(f)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(rows))
	for i, r := range rows {
		names[i], _ = r["name"].(string)
	}
	return names, nil
}

func dataHeader(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	h, err := csv.NewReader(f).Read()
	if err != nil {
		return nil, fmt.Errorf("no header row: %w", err)
	}
	return h, nil
}

func readManifest(path string) ([]ManifestEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FileManifest, unwrapPath(err))
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FileManifest, err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != strings.Join(manifestHeader, ",") {
		return nil, fmt.Errorf("%s: the header must be %s", FileManifest, strings.Join(manifestHeader, ","))
	}
	var out []ManifestEntry
	for i, r := range recs[1:] {
		n, err := strconv.ParseInt(r[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: row %d: bytes %q is not a number", FileManifest, i+2, r[1])
		}
		out = append(out, ManifestEntry{File: r[0], Bytes: n, MD5: r[2], Description: r[3]})
	}
	return out, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", filepath.Base(pe.Path), pe.Err)
	}
	return err
}
