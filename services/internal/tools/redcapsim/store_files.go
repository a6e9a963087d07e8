package redcapsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// doc is one stored file (REDCap's edocs): the file of a file-upload or
// signature field, or of the File Repository. With a data folder its
// content is on disk (projects/<id>/files/<doc_id>); otherwise in memory.
type doc struct {
	ID     int    `json:"id"`
	Name   string `json:"name"`
	MIME   string `json:"mime"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	// File Repository entries: the folder (0 = top level).
	Repo   bool `json:"repo,omitempty"`
	Folder int  `json:"folder,omitempty"`
	data   []byte
}

// docName is what a flat export shows for a file cell: the file name.
// Callers hold p.mu.
func (p *project) docName(cell string) string {
	if cell == "" {
		return ""
	}
	id, err := strconv.Atoi(cell)
	if err != nil {
		return cell // a name kept from an old data folder
	}
	if d := p.docs[id]; d != nil {
		return d.Name
	}
	return ""
}

func (s *Server) docPath(p *project, id int) string {
	return filepath.Join(p.dataDir, "files", strconv.Itoa(id))
}

// storeDoc saves an upload as a new doc, streaming it to disk with a data
// folder. Callers hold p.mu (write). Nothing is kept when it fails.
func (s *Server) storeDoc(p *project, name, ctype string, r io.Reader, max int64) (*doc, error) {
	p.nextDocID++
	d := &doc{ID: p.nextDocID, Name: cleanDocName(name), MIME: docMIME(name, ctype)}
	h := sha256.New()
	lim := &io.LimitedReader{R: r, N: max + 1}
	var err error
	if p.dataDir == "" {
		var buf bytes.Buffer
		_, err = io.Copy(io.MultiWriter(&buf, h), lim)
		d.data = buf.Bytes()
		d.Size = int64(buf.Len())
	} else {
		d.Size, err = writeDocFile(s.docPath(p, d.ID), io.TeeReader(lim, h))
	}
	if err == nil && d.Size > max {
		err = errTooBig
	}
	if err != nil {
		if p.dataDir != "" {
			os.Remove(s.docPath(p, d.ID))
		}
		return nil, err
	}
	d.SHA256 = hex.EncodeToString(h.Sum(nil))
	p.docs[d.ID] = d
	return d, nil
}

var errTooBig = errors.New("file too large")

func writeDocFile(path string, r io.Reader) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	err = errors.Join(err, f.Sync(), f.Close())
	if err != nil {
		os.Remove(tmp)
		return n, err
	}
	return n, os.Rename(tmp, path)
}

// openDoc returns a doc's content. Callers hold p.mu (read).
func (s *Server) openDoc(p *project, d *doc) (io.ReadCloser, error) {
	if p.dataDir == "" {
		return io.NopCloser(bytes.NewReader(d.data)), nil
	}
	f, err := os.Open(s.docPath(p, d.ID))
	if errors.Is(err, os.ErrNotExist) && d.Size == 0 {
		return io.NopCloser(strings.NewReader("")), nil // a name-only doc from seed data
	}
	return f, err
}

// dropDoc forgets a doc and its content. Callers hold p.mu (write).
func (s *Server) dropDoc(p *project, id int) {
	if p.docs[id] == nil {
		return
	}
	delete(p.docs, id)
	if p.dataDir != "" {
		os.Remove(s.docPath(p, id))
	}
}

func (p *project) docList() []*doc {
	out := make([]*doc, 0, len(p.docs))
	for _, d := range p.docs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// setFileCell points a record's file field at a doc (or clears it), with a
// change-log entry of its own, and persists it. Callers hold p.mu (write).
func (s *Server) setFileCell(p *project, t fileTarget, value string, l logEntry) {
	plan := []plannedRow{{rec: t.rec.id, ev: t.ev, rep: t.rep, inst: t.inst, dag: -1, vals: []colVal{{t.col, value}}}}
	wo := writeOpts{overwrite: true, user: l.user, ts: l.ts, silent: true}
	p.applyPlan(plan, wo)
	p.log = append(p.log, l)
	s.persistImport(p, plan, wo, l)
}

// nameOnlyDoc stands in for a file named in seed data (a project XML or
// data.csv names the file but carries no content).
func (p *project) nameOnlyDoc(name string) *doc {
	p.nextDocID++
	d := &doc{ID: p.nextDocID, Name: cleanDocName(name), MIME: docMIME(name, "")}
	p.docs[d.ID] = d
	return d
}

func cleanDocName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.ReplaceAll(name, "'", "")
	if name == "." || name == "/" || name == "" {
		return "file"
	}
	return name
}

// docMIME guesses a MIME type from the name, as REDCap does, falling back
// to the upload's own type and then to application/octet-stream.
func docMIME(name, ctype string) string {
	if t := mime.TypeByExtension(strings.ToLower(filepath.Ext(name))); t != "" {
		return strings.Split(t, ";")[0]
	}
	if ctype != "" && !strings.HasPrefix(ctype, "application/octet-stream") {
		return strings.Split(ctype, ";")[0]
	}
	return "application/octet-stream"
}

// fileTarget is a resolved file call: which row and cell.
type fileTarget struct {
	rec       *record
	ev, rep   int
	inst      int
	col       int
	fieldName string
}

func (t fileTarget) String() string {
	return fmt.Sprintf("record %q field %q", t.rec.id, t.fieldName)
}
