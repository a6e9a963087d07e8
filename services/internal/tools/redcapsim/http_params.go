package redcapsim

import (
	"mime/multipart"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// params is the POST form with REDCap's normalisation rules.
type params struct {
	v     url.Values
	files map[string]*multipart.FileHeader // uploaded parts ("file")
}

// has reports whether an array parameter was sent at all (name, name[] or
// name[i]), even empty.
func (p params) has(name string) bool {
	for k := range p.v {
		if k == name || strings.HasPrefix(k, name+"[") {
			return true
		}
	}
	return false
}

// str returns a parameter; "" means absent.
func (p params) str(name string) string { return p.v.Get(name) }

// format: json, csv, xml, odm; anything else (or missing) becomes xml.
func (p params) format() string {
	switch f := strings.ToLower(p.str("format")); f {
	case "json", "csv", "xml", "odm":
		return f
	}
	return "xml"
}

// returnFormat is settled first so that every later error uses it.
func (p params) returnFormat() string {
	rf := strings.ToLower(p.str("returnFormat"))
	if rf == "" {
		rf = strings.ToLower(p.str("format"))
	}
	switch rf {
	case "json", "csv", "xml":
		return rf
	}
	return "xml"
}

func (p params) oneOf(name, def string, allowed ...string) string {
	v := p.str(name)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return def
}

// boolean: true only for "1" or "true" (any case).
func (p params) boolean(name string) bool {
	v := strings.ToLower(p.str(name))
	return v == "1" || v == "true"
}

// array reads records[0]=, records[]= or records=a,b. Elements are trimmed
// and single quotes stripped; double quotes too when dq is set.
func (p params) array(name string, dq bool) []string {
	var raw []string
	type idx struct {
		i   int
		val []string
	}
	var indexed []idx
	for k, vs := range p.v {
		switch {
		case k == name:
			for _, v := range vs {
				if v == "" {
					continue
				}
				raw = append(raw, strings.Split(v, ",")...)
			}
		case k == name+"[]":
			raw = append(raw, vs...)
		case strings.HasPrefix(k, name+"[") && strings.HasSuffix(k, "]"):
			n, err := strconv.Atoi(k[len(name)+1 : len(k)-1])
			if err != nil {
				n = 1 << 30
			}
			indexed = append(indexed, idx{n, vs})
		}
	}
	sort.SliceStable(indexed, func(a, b int) bool { return indexed[a].i < indexed[b].i })
	for _, x := range indexed {
		raw = append(raw, x.val...)
	}
	out := raw[:0:0]
	for _, s := range raw {
		s = strings.TrimSpace(s)
		s = strings.ReplaceAll(s, "'", "")
		if dq {
			s = strings.ReplaceAll(s, `"`, "")
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (p params) csvDelimiter() rune {
	switch p.str("csvDelimiter") {
	case "tab", "TAB":
		return '\t'
	case ";":
		return ';'
	case "|":
		return '|'
	case "^":
		return '^'
	}
	return ','
}

var validContent = map[string]bool{}

func init() {
	for _, c := range strings.Split("record metadata file fileRepository repeatingFormsEvents instrument event arm user "+
		"project_settings report version pdf surveyLink surveyAccessCode surveyQueueLink surveyReturnCode "+
		"participantList exportFieldNames formEventMapping fieldValidation attachment project "+
		"generateNextRecordName project_xml dag userDagMapping log userRole userRoleMapping", " ") {
		validContent[c] = true
	}
}

// action resolves the action for a content value, following the
// dispatcher's defaults. ok is false for an explicitly invalid action.
func (p params) action(content string) (string, bool) {
	a := p.str("action")
	switch content {
	case "record":
		switch a {
		case "delete", "rename", "randomize":
			return a, true
		}
	case "event", "arm", "dag", "user", "userRole", "file", "fileRepository":
		if a == "" {
			if p.str("data") != "" {
				return "import", true
			}
			return "export", true
		}
		switch a {
		case "export", "import", "delete", "switch", "createFolder", "list":
			return a, true
		}
		return a, false
	case "version", "repeatingFormsEvents", "userRoleMapping":
		if a == "" {
			if p.str("data") != "" && content != "version" {
				return "import", true
			}
			return "export", true
		}
		return a, true
	}
	if p.str("data") != "" {
		return "import", true
	}
	return "export", true
}
