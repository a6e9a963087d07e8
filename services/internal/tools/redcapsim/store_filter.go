package redcapsim

import (
	"fmt"
	"strconv"
	"strings"
)

// A small evaluator for REDCap's filterLogic: [field], [event][field],
// [checkbox(code)], numbers, quoted strings, = <> != < > <= >=, and, or,
// not, parentheses. It is evaluated per exported row; a record is kept
// when any of its rows matches.

type logicExpr struct {
	op          string // "or", "and", "not", "cmp", "val"
	left, right *logicExpr
	cmp         string
	// operand
	lit   string
	isLit bool
	col   int // storage column, -1 for the record ID
	event int // -1 = the row's event
}

type lexer struct {
	s   string
	pos int
}

func (l *lexer) skip() {
	for l.pos < len(l.s) && strings.ContainsRune(" \t\r\n", rune(l.s[l.pos])) {
		l.pos++
	}
}

func (l *lexer) peekWord(w string) bool {
	l.skip()
	if len(l.s)-l.pos < len(w) || !strings.EqualFold(l.s[l.pos:l.pos+len(w)], w) {
		return false
	}
	end := l.pos + len(w)
	if end < len(l.s) {
		c := l.s[end]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return false
		}
	}
	return true
}

func parseLogic(s string, p *project) (*logicExpr, error) {
	l := &lexer{s: s}
	e, err := parseOr(l, p)
	if err != nil {
		return nil, err
	}
	l.skip()
	if l.pos != len(l.s) {
		return nil, fmt.Errorf("unexpected text at character %d", l.pos+1)
	}
	return e, nil
}

func parseOr(l *lexer, p *project) (*logicExpr, error) {
	left, err := parseAnd(l, p)
	if err != nil {
		return nil, err
	}
	for l.peekWord("or") {
		l.pos += 2
		right, err := parseAnd(l, p)
		if err != nil {
			return nil, err
		}
		left = &logicExpr{op: "or", left: left, right: right}
	}
	return left, nil
}

func parseAnd(l *lexer, p *project) (*logicExpr, error) {
	left, err := parseNot(l, p)
	if err != nil {
		return nil, err
	}
	for l.peekWord("and") {
		l.pos += 3
		right, err := parseNot(l, p)
		if err != nil {
			return nil, err
		}
		left = &logicExpr{op: "and", left: left, right: right}
	}
	return left, nil
}

func parseNot(l *lexer, p *project) (*logicExpr, error) {
	if l.peekWord("not") {
		l.pos += 3
		e, err := parseNot(l, p)
		if err != nil {
			return nil, err
		}
		return &logicExpr{op: "not", left: e}, nil
	}
	return parseCmp(l, p)
}

func parseCmp(l *lexer, p *project) (*logicExpr, error) {
	l.skip()
	if l.pos < len(l.s) && l.s[l.pos] == '(' {
		l.pos++
		e, err := parseOr(l, p)
		if err != nil {
			return nil, err
		}
		l.skip()
		if l.pos >= len(l.s) || l.s[l.pos] != ')' {
			return nil, fmt.Errorf("missing ')' at character %d", l.pos+1)
		}
		l.pos++
		return e, nil
	}
	left, err := parseOperand(l, p)
	if err != nil {
		return nil, err
	}
	l.skip()
	for _, op := range []string{"<>", "!=", "<=", ">=", "==", "=", "<", ">"} {
		if strings.HasPrefix(l.s[l.pos:], op) {
			l.pos += len(op)
			right, err := parseOperand(l, p)
			if err != nil {
				return nil, err
			}
			if op == "!=" {
				op = "<>"
			}
			if op == "==" {
				op = "="
			}
			return &logicExpr{op: "cmp", cmp: op, left: left, right: right}, nil
		}
	}
	// A bare operand is true when it is non-blank and not 0.
	return &logicExpr{op: "cmp", cmp: "truthy", left: left}, nil
}

func parseOperand(l *lexer, p *project) (*logicExpr, error) {
	l.skip()
	if l.pos >= len(l.s) {
		return nil, fmt.Errorf("expected a value at the end")
	}
	c := l.s[l.pos]
	switch {
	case c == '"' || c == '\'':
		end := strings.IndexByte(l.s[l.pos+1:], c)
		if end < 0 {
			return nil, fmt.Errorf("unterminated string at character %d", l.pos+1)
		}
		v := l.s[l.pos+1 : l.pos+1+end]
		l.pos += end + 2
		return &logicExpr{op: "val", isLit: true, lit: v}, nil
	case c == '[':
		name, err := bracket(l)
		if err != nil {
			return nil, err
		}
		ev := -1
		l.skip()
		if l.pos < len(l.s) && l.s[l.pos] == '[' {
			fname, err := bracket(l)
			if err != nil {
				return nil, err
			}
			e, ok := p.eventByName[name]
			if !ok || !p.longitudinal {
				return nil, fmt.Errorf("unknown event [%s]", name)
			}
			ev, name = e, fname
		}
		col, err := logicColumn(p, name)
		if err != nil {
			return nil, err
		}
		return &logicExpr{op: "val", col: col, event: ev}, nil
	case c == '-' || c == '.' || c >= '0' && c <= '9':
		start := l.pos
		l.pos++
		for l.pos < len(l.s) && (l.s[l.pos] == '.' || l.s[l.pos] >= '0' && l.s[l.pos] <= '9') {
			l.pos++
		}
		return &logicExpr{op: "val", isLit: true, lit: l.s[start:l.pos]}, nil
	}
	return nil, fmt.Errorf("unexpected %q at character %d", string(c), l.pos+1)
}

func bracket(l *lexer) (string, error) {
	end := strings.IndexByte(l.s[l.pos:], ']')
	if end < 0 {
		return "", fmt.Errorf("missing ']' at character %d", l.pos+1)
	}
	name := strings.TrimSpace(l.s[l.pos+1 : l.pos+end])
	l.pos += end + 1
	return name, nil
}

func logicColumn(p *project, name string) (int, error) {
	if base, code, ok := strings.Cut(name, "("); ok && strings.HasSuffix(code, ")") {
		name = checkboxColumn(base, strings.TrimSuffix(code, ")"))
	}
	if name == p.recordIDField() {
		return 0, nil
	}
	if c, ok := p.colByName[name]; ok {
		return c, nil
	}
	return 0, fmt.Errorf("unknown field [%s]", name)
}

func (e *logicExpr) value(p *project, rec *record, r *row) string {
	if e.isLit {
		return e.lit
	}
	if e.col == 0 {
		return rec.id
	}
	target := r
	if e.event >= 0 && int(r.ev) != e.event {
		target = nil
		for i := range rec.rows {
			if int(rec.rows[i].ev) == e.event && rec.rows[i].rep == repNone {
				target = &rec.rows[i]
				break
			}
		}
		if target == nil {
			return ""
		}
	}
	return p.cellValue(&exportSpec{}, rec, target, e.col)
}

func (e *logicExpr) eval(p *project, rec *record, r *row) bool {
	switch e.op {
	case "or":
		return e.left.eval(p, rec, r) || e.right.eval(p, rec, r)
	case "and":
		return e.left.eval(p, rec, r) && e.right.eval(p, rec, r)
	case "not":
		return !e.left.eval(p, rec, r)
	}
	a := e.left.value(p, rec, r)
	if e.cmp == "truthy" {
		return a != "" && a != "0"
	}
	b := e.right.value(p, rec, r)
	af, aerr := strconv.ParseFloat(a, 64)
	bf, berr := strconv.ParseFloat(b, 64)
	numeric := aerr == nil && berr == nil
	switch e.cmp {
	case "=":
		if numeric {
			return af == bf
		}
		return a == b
	case "<>":
		if numeric {
			return af != bf
		}
		return a != b
	}
	if a == "" || b == "" {
		return false // blanks never satisfy an ordering comparison
	}
	if !numeric {
		switch e.cmp {
		case "<":
			return a < b
		case ">":
			return a > b
		case "<=":
			return a <= b
		case ">=":
			return a >= b
		}
	}
	switch e.cmp {
	case "<":
		return af < bf
	case ">":
		return af > bf
	case "<=":
		return af <= bf
	case ">=":
		return af >= bf
	}
	return false
}

func (e *logicExpr) matchesRecord(p *project, rec *record) bool {
	for i := range rec.rows {
		if e.eval(p, rec, &rec.rows[i]) {
			return true
		}
	}
	return false
}
