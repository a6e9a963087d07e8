package redcapsim

import (
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
)

// content=file: export, import and delete the file of a file-upload or
// signature field of one record (event, repeat_instance), with REDCap's
// parameters, checks (in its order) and texts.

// resolveFile finds the row and cell a file call names. Callers hold
// c.proj.mu.
func (c *call) resolveFile() (fileTarget, *apiError) {
	p := c.proj
	var t fileTarget
	ev := 0
	if p.longitudinal {
		e, ok := p.eventByName[c.p.str("event")]
		if !ok {
			return t, errorf(400, "invalid event")
		}
		ev = e
	}
	id := c.p.str("record")
	rec := p.records[id]
	if dag := c.dagIndex(); rec == nil || (dag >= 0 && rec.dag != dag) {
		return t, errorf(400, "The record \""+id+"\" does not exist")
	}
	name := c.p.str("field")
	fi, ok := p.fieldByName[name]
	if !ok || p.finfo[fi].FieldType != "file" {
		return t, errorf(400, "The field '"+name+"' does not exist or is not a 'file' field")
	}
	info := &p.finfo[fi]
	if !p.designated[ev][info.form] {
		return t, errorf(400, fmt.Sprintf("The field '%s' is on the instrument '%s', which is not designated for the event '%s'.", name, p.forms[info.form].name, p.eventUnique(ev)))
	}
	t = fileTarget{rec: rec, ev: ev, rep: repNone, col: info.cols[0], fieldName: name}
	switch {
	case p.repForm[ev][info.form]:
		t.rep = info.form
	case p.repEv[ev]:
		t.rep = repEvent
	}
	if t.rep != repNone {
		t.inst = 1
		if n, err := strconv.Atoi(c.p.str("repeat_instance")); err == nil && n > 0 {
			t.inst = n
		}
	}
	return t, nil
}

// cell is the doc_id the target's cell holds ("" none).
func (p *project) fileCell(t fileTarget) string {
	i := t.rec.findRow(t.ev, t.rep, t.inst)
	if i < 0 {
		return ""
	}
	return t.rec.rows[i].cell(t.col)
}

func (c *call) exportFile(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	if fi, ok := p.fieldByName[c.p.str("field")]; ok {
		switch level := c.acc.exportLevel(p.forms[p.finfo[fi].form].name); {
		case level == exportNone:
			p.mu.RUnlock()
			return errNoAccessExport
		case level != exportFull && (p.finfo[fi].Identifier == "y" || p.finfo[fi].Identifier == "1"):
			p.mu.RUnlock()
			return errorf(403, `The API request cannot complete because this File Upload field is an Identifier field while at the same time you currently have either "De-Identified" data export rights or "Remove all tagged Identifier fields" data export rights, which prevent you from exporting fields tagged as Identifiers. Higher level data export rights are required for this operation.`)
		}
	}
	t, aerr := c.resolveFile()
	if aerr != nil {
		p.mu.RUnlock()
		return aerr
	}
	id, _ := strconv.Atoi(p.fileCell(t))
	d := p.docs[id]
	if d == nil {
		p.mu.RUnlock()
		return errorf(400, "There is no file to download for this record")
	}
	body, err := c.s.openDoc(p, d)
	p.mu.RUnlock()
	if err != nil {
		return err
	}
	defer body.Close()
	p.mu.Lock()
	p.log = append(p.log, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Download file (API)", record: t.rec.id, details: t.fieldName, kind: logManage})
	p.mu.Unlock()
	writeFileAnswer(w, d, body)
	return nil
}

// writeFileAnswer sends a file as REDCap does: the MIME type and the name
// in Content-Type (`type; name="file.pdf"`), the bytes as the body.
func writeFileAnswer(w http.ResponseWriter, d *doc, body io.Reader) {
	w.Header().Set("Content-Type", d.MIME+`; name="`+strings.ReplaceAll(d.Name, `"`, "")+`"`)
	w.Header().Set("Content-Length", strconv.FormatInt(d.Size, 10))
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, body)
}

// upload is the "file" part of an upload call, checked as REDCap checks
// it (present, not over the size limit, readable).
func (c *call) upload() (*multipart.FileHeader, multipart.File, *apiError) {
	fh := c.p.files["file"]
	if fh == nil {
		return nil, nil, errorf(400, "No valid file was uploaded")
	}
	if fh.Size > c.s.opts.MaxFileMB<<20 {
		return nil, nil, c.tooBig()
	}
	src, err := fh.Open()
	if err != nil {
		return nil, nil, errorf(400, "There was a problem with the uploaded file")
	}
	return fh, src, nil
}

func (c *call) tooBig() *apiError {
	return errorf(400, fmt.Sprintf("The uploaded file exceeded the maximum file size limit of %d MB", c.s.opts.MaxFileMB))
}

// saveUpload stores an upload as a doc, with REDCap's texts for what fails.
// Callers hold c.proj.mu (write).
func (c *call) saveUpload(fh *multipart.FileHeader, src multipart.File) (*doc, *apiError) {
	d, err := c.s.storeDoc(c.proj, fh.Filename, fh.Header.Get("Content-Type"), src, c.s.opts.MaxFileMB<<20)
	if err == errTooBig {
		return nil, c.tooBig()
	}
	if err != nil {
		return nil, errorf(400, "A problem occurred while trying to save the uploaded file")
	}
	return d, nil
}

func (c *call) importFile(w http.ResponseWriter) error {
	fh, src, aerr := c.upload()
	if aerr != nil {
		return aerr
	}
	defer src.Close()
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	t, aerr := c.resolveFile()
	if aerr != nil {
		return aerr
	}
	if p.finfo[p.fieldByName[t.fieldName]].validation == "signature" {
		return errorf(400, "The field '"+t.fieldName+"' is a signature field. Signatures can only be captured in the web interface, not imported through the API.")
	}
	d, aerr := c.saveUpload(fh, src)
	if aerr != nil {
		return aerr
	}
	var removed []int
	if old, err := strconv.Atoi(p.fileCell(t)); err == nil && p.docs[old] != nil {
		c.s.dropDoc(p, old) // the file it replaces
		removed = append(removed, old)
	}
	c.s.persistDocs(p, []*doc{d}, removed)
	l := logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Upload document (API) " + t.rec.id, record: t.rec.id,
		details: t.fieldName + " = '" + strconv.Itoa(d.ID) + "'", kind: logFile}
	c.s.setFileCell(p, t, strconv.Itoa(d.ID), l)
	writeBody(w, c.rf, "")
	return nil
}

func (c *call) deleteFile(w http.ResponseWriter) error {
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	t, aerr := c.resolveFile()
	if aerr != nil {
		return aerr
	}
	cell := p.fileCell(t)
	if cell == "" {
		return errorf(400, "There is no file to delete for this record")
	}
	var removed []int
	if id, err := strconv.Atoi(cell); err == nil && p.docs[id] != nil {
		c.s.dropDoc(p, id)
		removed = append(removed, id)
	}
	c.s.persistDocs(p, nil, removed)
	l := logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Delete uploaded document (API) " + t.rec.id, record: t.rec.id,
		details: t.fieldName, kind: logFile}
	c.s.setFileCell(p, t, "", l)
	writeBody(w, c.rf, "")
	return nil
}
