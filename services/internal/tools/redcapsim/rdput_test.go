package redcapsim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// A reader for the R dput() dumps of REDCapR's expectations: it keeps the
// columns of the outer structure(list(...)) and normalises R types to the
// text REDCap sent (numbers compared as numbers, Dates as Y-M-D, NA as "").

type rNode struct {
	atom  string // literal text (strings unquoted)
	isStr bool
	call  string
	args  []rArg
}

type rArg struct {
	name string
	val  *rNode
}

type rParser struct {
	s   string
	pos int
}

func (p *rParser) skip() {
	for p.pos < len(p.s) && unicode.IsSpace(rune(p.s[p.pos])) {
		p.pos++
	}
}

func (p *rParser) expr() (*rNode, error) {
	p.skip()
	if p.pos >= len(p.s) {
		return nil, fmt.Errorf("unexpected end")
	}
	c := p.s[p.pos]
	if c == '"' {
		end := p.pos + 1
		for end < len(p.s) && p.s[end] != '"' {
			if p.s[end] == '\\' {
				end++
			}
			end++
		}
		raw := p.s[p.pos : end+1]
		p.pos = end + 1
		v, err := strconv.Unquote(strings.ReplaceAll(raw, `\'`, `'`))
		if err != nil {
			return nil, fmt.Errorf("string %s: %v", raw, err)
		}
		return &rNode{atom: v, isStr: true}, nil
	}
	start := p.pos
	for p.pos < len(p.s) && (unicode.IsLetter(rune(p.s[p.pos])) || unicode.IsDigit(rune(p.s[p.pos])) || strings.ContainsRune("._-+", rune(p.s[p.pos]))) {
		p.pos++
	}
	word := p.s[start:p.pos]
	if word == "" {
		return nil, fmt.Errorf("unexpected %q at %d", c, p.pos)
	}
	p.skip()
	if p.pos < len(p.s) && p.s[p.pos] == '(' {
		p.pos++
		n := &rNode{call: word}
		for {
			p.skip()
			if p.s[p.pos] == ')' {
				p.pos++
				return n, nil
			}
			// optional name =
			save := p.pos
			name := ""
			ns := p.pos
			for p.pos < len(p.s) && (unicode.IsLetter(rune(p.s[p.pos])) || unicode.IsDigit(rune(p.s[p.pos])) || p.s[p.pos] == '_' || p.s[p.pos] == '.') {
				p.pos++
			}
			if p.pos > ns {
				w := p.s[ns:p.pos]
				p.skip()
				if p.pos < len(p.s) && p.s[p.pos] == '=' {
					name = w
					p.pos++
				} else {
					p.pos = save
				}
			} else {
				p.pos = save
			}
			v, err := p.expr()
			if err != nil {
				return nil, err
			}
			n.args = append(n.args, rArg{name, v})
			p.skip()
			if p.s[p.pos] == ',' {
				p.pos++
			}
		}
	}
	return &rNode{atom: word}, nil
}

// rColumn is one column: values normalised to text; na marks NA.
type rColumn struct {
	name   string
	vals   []string
	na     []bool
	num    bool
	isDate bool
	isBool bool
}

func parseRDput(src string) ([]rColumn, error) {
	p := &rParser{s: src}
	root, err := p.expr()
	if err != nil {
		return nil, err
	}
	if root.call != "structure" || len(root.args) == 0 || root.args[0].val.call != "list" {
		return nil, fmt.Errorf("not a structure(list(...)) dump")
	}
	var cols []rColumn
	for _, a := range root.args[0].val.args {
		c := rColumn{name: a.name}
		v := a.val
		if v.call == "structure" {
			for _, x := range v.args[1:] {
				if x.name == "class" && x.val.atom == "Date" {
					c.isDate = true
				}
			}
			v = v.args[0].val
		}
		atoms := []*rNode{v}
		if v.call == "c" {
			atoms = nil
			for _, x := range v.args {
				atoms = append(atoms, x.val)
			}
		}
		for _, at := range atoms {
			switch {
			case !at.isStr && at.atom == "NA":
				c.vals, c.na = append(c.vals, ""), append(c.na, true)
				continue
			case !at.isStr && (at.atom == "TRUE" || at.atom == "FALSE"):
				c.isBool = true
			case !at.isStr:
				c.num = true
			}
			val := at.atom
			if c.isDate {
				d, _ := strconv.ParseFloat(val, 64)
				val = time.Unix(int64(d)*86400, 0).UTC().Format("2006-01-02")
			}
			c.vals, c.na = append(c.vals, val), append(c.na, false)
		}
		cols = append(cols, c)
	}
	return cols, nil
}

// rMatches compares one R value with the text REDCap sent.
func (c *rColumn) matches(i int, got string) bool {
	if c.na[i] {
		return got == ""
	}
	want := c.vals[i]
	switch {
	case c.isBool:
		return strings.EqualFold(want, got) || (want == "TRUE" && got == "1") || (want == "FALSE" && got == "0")
	case c.num && !c.isDate:
		a, err1 := strconv.ParseFloat(want, 64)
		b, err2 := strconv.ParseFloat(got, 64)
		return err1 == nil && err2 == nil && a == b
	}
	return want == got
}
