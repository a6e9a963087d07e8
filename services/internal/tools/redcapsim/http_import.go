package redcapsim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

func (c *call) importRecords(w http.ResponseWriter) error {
	q := c.p
	format := q.format()
	if format == "odm" {
		format = "xml"
	}
	rows, notArray, err := parseData(q.str("data"), format, q.oneOf("type", "flat", "flat", "eav"), q.csvDelimiter())
	if err != nil {
		return err
	}
	rc := q.oneOf("returnContent", "count", "count", "ids", "auto_ids", "nothing")
	forceAuto := q.boolean("forceAutoNumber")
	if rc == "auto_ids" && !forceAuto {
		rc = "count"
	}
	if notArray {
		writeImportResult(w, c.rf, rc, &importResult{})
		return nil
	}
	o := importOpts{
		overwrite:  q.oneOf("overwriteBehavior", "normal", "normal", "overwrite") == "overwrite",
		dateFormat: q.oneOf("dateFormat", "YMD", "MDY", "DMY"),
		forceAuto:  forceAuto,
		dagName:    c.acc.dag,
		user:       c.acc.user,
	}
	res, err := c.s.importInto(c.proj, rows, o)
	var ve *validationError
	if errors.As(err, &ve) {
		return errorf(400, ve.Error())
	}
	if err != nil {
		return err
	}
	if q.boolean("backgroundProcess") {
		switch c.rf {
		case "json":
			writeBody(w, "json", `{"success":true}`)
		case "csv":
			writeBody(w, "csv", "success\ntrue")
		default:
			writeBody(w, "xml", xmlHeader+"<success>true</success>")
		}
		return nil
	}
	writeImportResult(w, c.rf, rc, res)
	return nil
}

func writeImportResult(w http.ResponseWriter, rf, rc string, res *importResult) {
	switch rc {
	case "nothing":
		writeBody(w, rf, "")
	case "ids":
		switch rf {
		case "json":
			if res.ids == nil {
				res.ids = []string{}
			}
			b, _ := json.Marshal(res.ids)
			writeBody(w, "json", string(phpEscapeJSON(b)))
		case "csv":
			writeBody(w, "csv", strings.Join(append([]string{"id"}, res.ids...), "\n"))
		default:
			var b strings.Builder
			b.WriteString(xmlHeader + "<ids>")
			for _, id := range res.ids {
				b.WriteString("<id>" + xmlEscape(id) + "</id>")
			}
			b.WriteString("</ids>")
			writeBody(w, "xml", b.String())
		}
	case "auto_ids":
		pairs := make([]string, len(res.autoIDs))
		for i, p := range res.autoIDs {
			pairs[i] = p[0] + "," + p[1]
		}
		switch rf {
		case "json":
			b, _ := json.Marshal(pairs)
			writeBody(w, "json", string(phpEscapeJSON(b)))
		case "csv":
			writeBody(w, "csv", strings.Join(append([]string{"id,original_id"}, pairs...), "\n"))
		default:
			var b strings.Builder
			b.WriteString(xmlHeader + "<ids>")
			for _, id := range pairs {
				b.WriteString("<id>" + xmlEscape(id) + "</id>")
			}
			b.WriteString("</ids>")
			writeBody(w, "xml", b.String())
		}
	default:
		n := strconv.Itoa(len(res.ids))
		switch rf {
		case "json":
			writeBody(w, "json", `{"count": `+n+`}`)
		case "csv":
			writeBody(w, "csv", n)
		default:
			writeBody(w, "xml", xmlHeader+"<count>"+n+"</count>")
		}
	}
}
