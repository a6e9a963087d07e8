package redcapsim

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
)

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// dispatch runs the checks in REDCap's order: returnFormat, token, content,
// rights, then the handler.
func (s *Server) dispatch(w http.ResponseWriter, p params) {
	rf := p.returnFormat()
	content := p.str("content")
	tok := p.str("token")

	// Super token calls.
	if (content == "version" && len(tok) == 64) || (content == "project" && p.str("data") != "") {
		s.mu.RLock()
		ok := s.super != "" && tok == s.super && tokenRE.MatchString(tok)
		s.mu.RUnlock()
		if !ok {
			s.count("denied")
			writeError(w, rf, 403, "")
			return
		}
		if content == "version" {
			s.count("version")
			writeBody(w, "csv", s.opts.Version)
			return
		}
		s.count("project:create")
		s.createProjectAPI(w, p, rf)
		return
	}
	if !tokenRE.MatchString(tok) {
		s.count("denied")
		writeError(w, rf, 403, "")
		return
	}
	s.mu.RLock()
	t, ok := s.tokens[tok]
	var proj *project
	if ok {
		proj = s.projs[t.project]
	}
	s.mu.RUnlock()
	if !ok || proj == nil {
		s.count("denied")
		writeError(w, rf, 403, "")
		return
	}
	if !validContent[content] {
		s.count("invalid")
		writeError(w, rf, 400, `The value of the parameter "content" is not valid`)
		return
	}
	action, ok := p.action(content)
	if !ok {
		writeError(w, rf, 400, `The value of the parameter "action" is not valid`)
		return
	}
	key := content
	if action != "export" {
		key += ":" + action
	}
	s.count(key)
	c := &call{s: s, p: p, rf: rf, tok: t, proj: proj, action: action}
	if err := c.run(w, content); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			writeError(w, rf, ae.status, ae.msg)
			return
		}
		s.log.Error("redcapsim: internal error", "project_id", proj.id, "content", content, "err", err)
		writeError(w, rf, 500, "")
	}
}

// call is one authenticated API request.
type call struct {
	s      *Server
	p      params
	rf     string
	tok    *token
	proj   *project
	action string
}

// dagIndex is the token's DAG in the project's list (-1 none). Callers
// hold c.proj.mu.
func (c *call) dagIndex() int { return c.proj.dagIndexOf(c.tok.dag) }

var (
	errNoExport  = errorf(403, "You do not have API Export privileges")
	errNoImport  = errorf(403, "You do not have API Import/Update privileges")
	errNoDelete  = errorf(403, "You do not have Delete Record privileges")
	errNoLogging = errorf(403, "You do not have Logging privileges")
	errNoDesign  = errorf(403, "You do not have Project Setup/Design privileges")
)

func (c *call) run(w http.ResponseWriter, content string) error {
	r := c.tok.rights
	meta := r.Export || r.Metadata
	switch content {
	case "version":
		writeBody(w, "csv", c.s.opts.Version)
		return nil
	case "record":
		switch c.action {
		case "delete":
			if !r.Delete {
				return errNoDelete
			}
			return c.deleteRecords(w)
		case "import":
			if !r.Import {
				return errNoImport
			}
			return c.importRecords(w)
		case "export":
			if !r.Export {
				return errNoExport
			}
			return c.exportRecords(w)
		}
		return errorf(400, fmt.Sprintf("The simulator does not implement action=%s for content=record.", c.action))
	case "metadata":
		if c.action == "import" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importMetadata(w)
		}
		if !meta {
			return errNoExport
		}
		return c.exportMetadata(w)
	case "instrument":
		if !meta {
			return errNoExport
		}
		return c.exportInstruments(w)
	case "event", "arm", "formEventMapping":
		if c.action == "import" || c.action == "delete" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importDesign(w, content)
		}
		if !meta {
			return errNoExport
		}
		return c.exportDesign(w, content)
	case "repeatingFormsEvents":
		if c.action == "import" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importRepeating(w)
		}
		if !meta {
			return errNoExport
		}
		return c.exportRepeating(w)
	case "dag":
		if c.tok.dag != "" {
			return errorf(403, "You do not have permission to export or import Data Access Groups because you are assigned to a Data Access Group.")
		}
		if c.action == "import" || c.action == "delete" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importDAGs(w)
		}
		if !meta {
			return errNoExport
		}
		return c.exportDAGs(w)
	case "project":
		if c.action == "import" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importProjectInfo(w)
		}
		return c.exportProjectInfo(w)
	case "exportFieldNames":
		if !meta {
			return errNoExport
		}
		return c.exportFieldNames(w)
	case "generateNextRecordName":
		c.proj.mu.RLock()
		name := c.proj.nextRecordName(c.dagIndex())
		c.proj.mu.RUnlock()
		writeBody(w, "csv", name)
		return nil
	case "project_xml":
		if !r.Export {
			return errNoExport
		}
		return c.exportProjectXML(w)
	case "log":
		if !r.Logging {
			return errNoLogging
		}
		return c.exportLog(w)
	}
	return errorf(400, fmt.Sprintf("The simulator does not implement content=%s.", content))
}
