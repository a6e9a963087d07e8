package redcap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
)

// FileRef names the file of one file-upload (or signature) field of one
// record: Event in longitudinal projects, Instance for repeating
// instruments and events (0 = not repeating).
type FileRef struct {
	Record, Field, Event string
	Instance             int
}

// fileForm is a content=file call's form, token included.
func (c *Client) fileForm(action string, r FileRef) url.Values {
	f := content("file")
	f.Set("action", action)
	f.Set("returnFormat", "json")
	r.form(f)
	f.Set("token", c.token)
	return f
}

func (r FileRef) form(f url.Values) {
	f.Set("record", r.Record)
	f.Set("field", r.Field)
	if r.Event != "" {
		f.Set("event", r.Event)
	}
	if r.Instance > 0 {
		f.Set("repeat_instance", strconv.Itoa(r.Instance))
	}
}

// FileInfo is what REDCap says of an exported file: its name and MIME type
// (from the answer's Content-Type) and its size.
type FileInfo struct {
	Name, MIME string
	Size       int64
}

// maxErrorBody bounds what is read of an answer that is not a file.
const maxErrorBody = 1 << 20

// ExportFile downloads a record's file into w, streaming it (the client
// never holds the whole file). A download that ends early is a transient
// error; w may then hold part of the file.
func (c *Client) ExportFile(ctx context.Context, ref FileRef, w io.Writer) (FileInfo, error) {
	const call = "export file"
	enc := c.fileForm("export", ref).Encode()
	resp, done, err := c.send(ctx, call, strings.NewReader(enc), int64(len(enc)), "application/x-www-form-urlencoded")
	if err != nil {
		return FileInfo{}, err
	}
	defer done()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := readBody(io.LimitReader(resp.Body, maxErrorBody), 0)
		return FileInfo{}, c.answerError(call, resp, body)
	}
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	name, ok := params["name"]
	if !ok {
		// REDCap names every file it sends; anything else is an error page
		// or a body that came with 200.
		body, _ := readBody(io.LimitReader(resp.Body, maxErrorBody), 0)
		if err := c.checkBody(call, body, bodyJSON); err != nil {
			return FileInfo{}, err
		}
		if msg, _ := errorText(body); msg != "" {
			return FileInfo{}, c.newError(call, http.StatusOK, KindTransient, msg, "REDCap sent an error with status 200", nil)
		}
		return FileInfo{}, c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is not a file (no file name in Content-Type)", "", nil)
	}
	n, err := io.Copy(w, resp.Body)
	info := FileInfo{Name: name, MIME: mt, Size: n}
	if err != nil {
		if resp.Request.Context().Err() != nil {
			return info, c.netError(call, resp.Request.Context(), err)
		}
		return info, c.newError(call, http.StatusOK, KindTransient, fmt.Sprintf("the file download broke off after %d bytes", n), "", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return info, c.newError(call, http.StatusOK, KindTransient, fmt.Sprintf("the file download ended after %d of %d bytes", n, resp.ContentLength), "", nil)
	}
	return info, nil
}

// ImportFile uploads size bytes from r as the record's file named name,
// streaming them in a multipart body with an exact Content-Length (size
// < 0: sent chunked, which some PHP servers refuse). It replaces a file
// that is there.
func (c *Client) ImportFile(ctx context.Context, ref FileRef, name string, r io.Reader, size int64) error {
	const call = "import file"
	f := c.fileForm("import", ref)
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	for k, vs := range f {
		for _, v := range vs {
			if err := mw.WriteField(k, v); err != nil {
				return c.newError(call, 0, KindPermanent, "cannot build the request", "", err)
			}
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, strings.NewReplacer(`"`, "", "\r", "", "\n", "").Replace(name)))
	h.Set("Content-Type", "application/octet-stream")
	if _, err := mw.CreatePart(h); err != nil {
		return c.newError(call, 0, KindPermanent, "cannot build the request", "", err)
	}
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	body := io.MultiReader(bytes.NewReader(head.Bytes()), r, strings.NewReader(tail))
	length := int64(-1)
	if size >= 0 {
		body = io.MultiReader(bytes.NewReader(head.Bytes()), io.LimitReader(r, size), strings.NewReader(tail))
		length = int64(head.Len()) + size + int64(len(tail))
	}
	return c.fileCall(ctx, call, body, length, mw.FormDataContentType())
}

// DeleteFile removes a record's file.
func (c *Client) DeleteFile(ctx context.Context, ref FileRef) error {
	const call = "delete file"
	enc := c.fileForm("delete", ref).Encode()
	return c.fileCall(ctx, call, strings.NewReader(enc), int64(len(enc)), "application/x-www-form-urlencoded")
}

// fileCall sends a file import or delete, whose success is a 200 with an
// empty body (or "{}"); an HTML page or REDCap's trouble texts are errors.
func (c *Client) fileCall(ctx context.Context, call string, body io.Reader, length int64, ctype string) error {
	resp, done, err := c.send(ctx, call, body, length, ctype)
	if err != nil {
		return err
	}
	defer done()
	b, err := readBody(io.LimitReader(resp.Body, maxErrorBody), 0)
	resp.Body.Close()
	if err != nil {
		return c.netError(call, resp.Request.Context(), fmt.Errorf("reading the answer: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		return c.answerError(call, resp, b)
	}
	s := strings.TrimSpace(string(b))
	if s == "" || s == "{}" || s == "[{}]" || s == "[]" {
		return nil
	}
	return c.checkBody(call, b, bodyText)
}
