package redcapsim

import (
	"net/http"
	"strconv"
	"strings"
)

// The survey calls: surveyLink, surveyQueueLink, surveyAccessCode,
// surveyReturnCode and participantList, with REDCap's checks (in its
// order) and texts. Links and codes are stable per record, instrument,
// event and instance.

var errNoSurveyRights = errorf(403, `The API request cannot complete because currently you do not have "Manage Survey Participants" privileges, which are required for this operation.`)

func surveyRights(c *call) error {
	if !c.acc.can("api_export") {
		return errNoExport
	}
	if !c.acc.can("manage_survey_participants") {
		return errNoSurveyRights
	}
	return nil
}

// surveyRecord checks the record parameter. Callers hold c.proj.mu.
func (c *call) surveyRecord() (string, *apiError) {
	id := strings.TrimSpace(c.p.str("record"))
	if id == "" {
		return "", errorf(400, "The parameter 'record' is missing")
	}
	rec := c.proj.records[id]
	if dag := c.dagIndex(); rec == nil || (dag >= 0 && rec.dag != dag) {
		return "", errorf(400, "The record \""+id+"\" does not exist")
	}
	return id, nil
}

// surveyForm checks instrument and event (designation too when withRecord).
// Callers hold c.proj.mu.
func (c *call) surveyForm(designated bool) (form, ev int, err *apiError) {
	p := c.proj
	name := strings.TrimSpace(c.p.str("instrument"))
	fi, ok := p.formByName[name]
	switch {
	case name == "":
		return 0, 0, errorf(400, "The parameter 'instrument' is missing")
	case !ok:
		return 0, 0, errorf(400, "Invalid instrument")
	case p.surveyOf[fi] == nil:
		return 0, 0, errorf(400, "The instrument '"+name+"' has not been enabled as a survey")
	}
	if !p.longitudinal {
		return fi, 0, nil
	}
	evName := strings.TrimSpace(c.p.str("event"))
	if evName == "" {
		return 0, 0, errorf(400, "The parameter 'event' is missing")
	}
	e, ok := p.eventByName[evName]
	if !ok {
		return 0, 0, errorf(400, "Invalid event")
	}
	if designated && !p.designated[e][fi] {
		return 0, 0, errorf(400, "The instrument \""+name+"\" has not been designated for the event \""+evName+"\"")
	}
	return fi, e, nil
}

// surveyTarget resolves record, instrument, event and instance.
func (c *call) surveyTarget() (surveyTarget, *apiError) {
	rec, err := c.surveyRecord()
	if err != nil {
		return surveyTarget{}, err
	}
	fi, ev, err := c.surveyForm(true)
	if err != nil {
		return surveyTarget{}, err
	}
	t := surveyTarget{rec: rec, form: fi, ev: ev, rep: repNone}
	p := c.proj
	if p.repForm[ev][fi] || p.repEv[ev] {
		t.inst = 1
		if n, err := strconv.Atoi(c.p.str("repeat_instance")); err == nil && n > 0 {
			t.inst = n
		}
	}
	return t, nil
}

// surveyBase is where survey links point: this server's /surveys/.
func (c *call) surveyBase() string {
	host := c.host
	if host == "" {
		host = "localhost"
	}
	return "http://" + host + "/surveys/"
}

func (c *call) logSurvey(t surveyTarget, what string) {
	details := "record = '" + t.rec + "',\nform_name = '" + c.proj.forms[t.form].name + "'"
	if c.proj.longitudinal {
		details += ",\nevent_id = " + strconv.Itoa(c.proj.events[t.ev].EventID)
	}
	c.proj.log = append(c.proj.log, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: what + " (API)", record: t.rec, details: details, kind: logManage})
}

func writeText(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(s)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(s))
}

// surveyAnswer resolves a survey target, runs the call's own check, logs
// the call and answers with plain text.
func (c *call) surveyAnswer(w http.ResponseWriter, what string, check func(surveyTarget) *apiError, answer func(surveyTarget) string) error {
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	t, err := c.surveyTarget()
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(t); err != nil {
			return err
		}
	}
	c.logSurvey(t, what)
	writeText(w, answer(t))
	return nil
}

func (c *call) surveyLink(w http.ResponseWriter) error {
	return c.surveyAnswer(w, "Download survey link", nil, func(t surveyTarget) string {
		return c.surveyBase() + "?s=" + c.proj.surveyCode("link", t, 16, hashAlphabet)
	})
}

func (c *call) surveyAccessCode(w http.ResponseWriter) error {
	return c.surveyAnswer(w, "Download survey access code", nil, func(t surveyTarget) string {
		return c.proj.surveyCode("access", t, 9, codeAlphabet)
	})
}

func (c *call) surveyReturnCode(w http.ResponseWriter) error {
	saveReturn := func(t surveyTarget) *apiError {
		if !c.proj.surveyOf[t.form].SaveAndReturn {
			return errorf(400, "The instrument '"+c.proj.forms[t.form].name+"' does not have the 'Save & Return Later' feature enabled")
		}
		return nil
	}
	return c.surveyAnswer(w, "Download survey return code", saveReturn, func(t surveyTarget) string {
		return c.proj.surveyCode("return", t, 8, codeAlphabet)
	})
}

func (c *call) surveyQueueLink(w http.ResponseWriter) error {
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	rec, err := c.surveyRecord()
	if err != nil {
		return err
	}
	if !p.surveyQueue || !p.surveys {
		return errorf(400, "The Survey Queue has not been enabled in this project")
	}
	t := surveyTarget{rec: rec, form: -1}
	p.log = append(p.log, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Download survey queue link (API)", record: rec, details: "record = '" + rec + "'", kind: logManage})
	writeText(w, c.surveyBase()+"?sq="+p.surveyCode("queue", t, 16, hashAlphabet))
	return nil
}

// participantList lists one participant per record that exists in the
// survey's event (within the user's DAG): email and identifier as set,
// the response status from the <form>_timestamp (0 none, 1 partial,
// 2 completed), and each one's access code and link.
func (c *call) participantList(w http.ResponseWriter) error {
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	fi, ev, aerr := c.surveyForm(false)
	if aerr != nil {
		return aerr
	}
	tsCol := p.colByName[p.forms[fi].name+"_timestamp"]
	t := &table{header: []string{"email", "email_occurrence", "identifier", "record", "invitation_sent_status", "invitation_send_time",
		"response_status", "survey_access_code", "survey_link"},
		ints: map[string]bool{"email_occurrence": true, "invitation_sent_status": true, "response_status": true}}
	dag := c.dagIndex()
	for _, rec := range p.sortedRecords() {
		if dag >= 0 && rec.dag != dag {
			continue
		}
		for ri := range rec.rows {
			r := &rec.rows[ri]
			if int(r.ev) != ev || !p.applies(fi, r) {
				continue
			}
			st := "0"
			switch v := r.cell(tsCol); {
			case v == "[not completed]":
				st = "1"
			case v != "":
				st = "2"
			}
			tg := surveyTarget{rec: rec.id, form: fi, ev: ev, rep: repNone, inst: int(r.inst)}
			t.rows = append(t.rows, []string{"", "1", p.surveyIdents[rec.id], rec.id, "0", "", st,
				p.surveyCode("access", tg, 9, codeAlphabet), c.surveyBase() + "?s=" + p.surveyCode("link", tg, 16, hashAlphabet)})
		}
	}
	details := "form_name = '" + p.forms[fi].name + "'"
	if p.longitudinal {
		details += ",\nevent_id = " + strconv.Itoa(p.events[ev].EventID)
	}
	p.log = append(p.log, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Download survey participant list (API)", record: p.forms[fi].name, details: details, kind: logManage})
	t.write(w, c.p.format())
	return nil
}
