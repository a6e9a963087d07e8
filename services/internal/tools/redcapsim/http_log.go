package redcapsim

import (
	"net/http"
	"strings"
	"time"
)

func (c *call) exportLog(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	loc := c.s.now().Location()
	var begin, end int64 = 0, 1 << 62
	if t, ok := parseRangeTime(c.p.str("beginTime"), false, loc); ok {
		begin = t.Unix()
	}
	if t, ok := parseRangeTime(c.p.str("endTime"), false, loc); ok {
		end = t.Unix() + 59 // minute resolution
	}
	logtype := c.p.str("logtype")
	user := c.p.str("user")
	rec := c.p.str("record")
	t := &table{header: []string{"timestamp", "username", "action", "details", "record"}}
	for i := len(p.log) - 1; i >= 0; i-- {
		l := &p.log[i]
		if l.ts < begin || l.ts > end || (user != "" && l.user != user) || (rec != "" && l.record != rec) {
			continue
		}
		if !logTypeMatches(logtype, l) {
			continue
		}
		t.rows = append(t.rows, []string{time.Unix(l.ts, 0).In(loc).Format("2006-01-02 15:04"), l.user, l.action, l.details, l.record})
	}
	t.write(w, c.p.format())
	return nil
}

func logTypeMatches(lt string, l *logEntry) bool {
	switch lt {
	case "":
		return true
	case "export":
		return l.kind == logExport
	case "manage":
		return l.kind == logManage
	case "user":
		return l.kind == logUser
	case "record":
		return l.isRecordChange() || l.kind == logDelete
	case "record_add":
		return l.kind == logData && strings.HasPrefix(l.action, "Create record")
	case "record_edit":
		return (l.kind == logData && (strings.HasPrefix(l.action, "Update record") || strings.HasPrefix(l.action, "Update survey response"))) || l.kind == logRename || l.kind == logFile
	case "record_delete":
		return l.kind == logDelete
	}
	return false
}
