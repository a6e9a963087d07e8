package protocol

import "github.com/redcap-relay/relay/messages"

// instMatch is how one required instrument is implemented at a site.
type instMatch struct {
	in    *Instrument
	def   *Instrument // in itself or the substitute used
	form  string      // the main form: named like it, or holding most of its items
	by    string      // name, alias, fields, content
	subst string
	fm    *defMatch
	// parts are other forms that hold only (or mostly) its items: the site
	// split the instrument. moved are items the site put in some other
	// form (library item -> that form).
	parts []string
	moved map[string]string
}

// matchInstruments finds each required instrument's site form: by exact
// name, then by alias (form name or label), then through a substitute (name,
// then alias), and last by its items, found by name or by content, in the
// definition (the instrument or a substitute) they fit best.
func (c *checker) matchInstruments() []*instMatch {
	p, x := c.p, c.x
	out := make([]*instMatch, len(p.Instruments))
	taken := map[string]bool{}
	byNorm := map[string]string{}
	for _, f := range x.formOrder {
		if _, ok := byNorm[norm(f)]; !ok {
			byNorm[norm(f)] = f
		}
	}
	for _, f := range x.formOrder {
		if l := norm(x.formLabel[f]); l != "" {
			if _, ok := byNorm[l]; !ok {
				byNorm[l] = f
			}
		}
	}
	byFormName := func(def *Instrument) string {
		if _, ok := x.forms[def.Name]; ok && !taken[def.Name] {
			return def.Name
		}
		return ""
	}
	byAlias := func(def *Instrument) string {
		for _, a := range append([]string{def.Name, def.Label}, def.Aliases...) {
			if f, ok := byNorm[norm(a)]; ok && !taken[f] && norm(a) != "" {
				return f
			}
		}
		return ""
	}
	usable := func(in *Instrument) bool { return len(in.Fields) > 0 }
	set := func(i int, m *instMatch) {
		taken[m.form] = true
		m.fm = c.matchDef(m.def)
		out[i] = m
	}
	try := func(pass string, find func(*Instrument) string) {
		for i := range p.Instruments {
			in := &p.Instruments[i]
			if out[i] != nil || !usable(in) {
				continue
			}
			if pass != "substitute" {
				if f := find(in); f != "" {
					set(i, &instMatch{in: in, def: in, form: f, by: pass})
				}
				continue
			}
			for _, s := range in.Substitutes {
				sd := p.substitute(s)
				if sd == nil || !usable(sd) {
					continue
				}
				f, by := byFormName(sd), "name"
				if f == "" {
					f, by = byAlias(sd), "alias"
				}
				if f != "" {
					set(i, &instMatch{in: in, def: sd, form: f, by: by, subst: sd.Name})
					break
				}
			}
		}
	}
	try("name", byFormName)
	try("alias", byAlias)
	try("substitute", nil)
	for i := range p.Instruments {
		in := &p.Instruments[i]
		if out[i] == nil && usable(in) {
			out[i] = c.matchByItems(in)
		}
	}
	c.resolveShared(out)
	c.classifyForms(out)
	return out
}

// resolveShared gives a site field that the content of two instruments'
// items fits to the better fit; a tie is ambiguous for both, and neither
// keeps it.
func (c *checker) resolveShared(ms []*instMatch) {
	type claim struct {
		m   *instMatch
		lib string
		ps  pairScore
	}
	by := map[string][]claim{}
	for _, m := range ms {
		if m == nil {
			continue
		}
		for _, lib := range sortedKeys(m.fm.found) {
			if sm := m.fm.found[lib]; sm.by == byContent {
				by[sm.f.FieldName] = append(by[sm.f.FieldName], claim{m, lib, sm.ps})
			}
		}
	}
	for _, site := range sortedKeys(by) {
		cl := by[site]
		if len(cl) < 2 {
			continue
		}
		best := 0.0
		for _, x := range cl {
			best = max(best, x.ps.score)
		}
		var win []claim
		for _, x := range cl {
			if x.ps.score >= best-tieMargin {
				win = append(win, x)
			}
		}
		for _, x := range cl {
			sf := x.m.fm.found[x.lib].f
			if len(win) == 1 && win[0].m == x.m {
				continue
			}
			delete(x.m.fm.found, x.lib)
			if len(win) == 1 {
				continue // the item is simply not there
			}
			var others []string
			for _, o := range win {
				if o.m != x.m {
					others = append(others, o.lib+" ("+o.m.in.Name+")")
				}
			}
			x.m.fm.issues[x.lib] = itemIssue{kind: KindFieldAmbiguous, cands: []*messages.Field{sf}, others: others, ps: x.ps}
		}
	}
}

// matchByItems is the last resort: the definition (the instrument or an
// allowed substitute) with the most items found at the site, at least
// half of its own; its main form is the one holding most of them. Forms
// may be shared here: sites often put short scales together on one page.
func (c *checker) matchByItems(in *Instrument) *instMatch {
	defs := []*Instrument{in}
	for _, s := range in.Substitutes {
		if sd := c.p.substitute(s); sd != nil && len(sd.Fields) > 0 {
			defs = append(defs, sd)
		}
	}
	var best *instMatch
	bestN, bestCover := 0, 0.0
	for _, def := range defs {
		dm := c.matchDef(def)
		n, total := len(dm.found), answerItems(def)
		if total == 0 || 2*n < total {
			continue
		}
		cover := float64(n) / float64(total)
		if n < bestN || (n == bestN && cover <= bestCover) {
			continue
		}
		counts := dm.formCounts()
		form, most := "", 0
		for _, f := range c.x.formOrder {
			if counts[f] > most {
				form, most = f, counts[f]
			}
		}
		if form == "" {
			continue
		}
		m := &instMatch{in: in, def: def, form: form, by: "fields", fm: dm}
		if dm.viaContent > 0 {
			m.by = "content"
		}
		if def != in {
			m.subst = def.Name
		}
		best, bestN, bestCover = m, n, cover
	}
	return best
}

// classifyForms sorts the forms that hold an instrument's items outside
// its main form: a form that is no other instrument's main form and whose
// fields are mostly this instrument's items is a part of a split
// instrument; any other form holds moved items.
func (c *checker) classifyForms(ms []*instMatch) {
	mainOf := map[string]bool{}
	for _, m := range ms {
		if m != nil {
			mainOf[m.form] = true
		}
	}
	for _, m := range ms {
		if m == nil {
			continue
		}
		m.moved = map[string]string{}
		counts := m.fm.formCounts()
		part := map[string]bool{}
		for _, f := range c.x.formOrder {
			n := counts[f]
			if f == m.form || n == 0 || mainOf[f] {
				continue
			}
			if 2*n >= c.answerFields(f) {
				part[f] = true
				m.parts = append(m.parts, f)
			}
		}
		for lib, sm := range m.fm.found {
			if f := sm.f.FormName; f != m.form && !part[f] {
				m.moved[lib] = f
			}
		}
	}
}

// answerFields counts a site form's fields that hold answers (not the
// record ID, not descriptive text).
func (c *checker) answerFields(form string) int {
	n := 0
	for _, f := range c.x.forms[form] {
		if f.FieldName != c.x.recordID && f.FieldType != "descriptive" {
			n++
		}
	}
	return n
}

// formsOf lists the match's site forms: the main one, then the parts.
func (m *instMatch) forms() []string {
	return append([]string{m.form}, m.parts...)
}
