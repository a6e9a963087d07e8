package protocol

import (
	"sort"

	"github.com/redcap-relay/relay/messages"
)

// How a library item was found at the site.
const (
	byName        = "name"         // its own variable name (any case)
	byNameVariant = "name_variant" // a name from the corrections table or field_aliases
	byContent     = "content"      // its wording and answers, under another name
)

// siteMatch is the site field found for one library item.
type siteMatch struct {
	f  *messages.Field
	by string
	ps pairScore // content matches only
}

// itemIssue is a library item whose site field cannot be told for sure:
// several site fields fit equally (ambiguous), or one has its wording but
// answers that disagree (conflict). Either way nothing is picked silently.
type itemIssue struct {
	kind   string // KindFieldAmbiguous or KindFieldConflict
	cands  []*messages.Field
	others []string // other library items the same site field fits as well
	ps     pairScore
}

// defMatch is one instrument definition's items at the site.
type defMatch struct {
	def        *Instrument
	found      map[string]siteMatch // library field name -> site field
	issues     map[string]itemIssue
	viaContent int
}

// answerItems counts the definition's items that a site can be expected
// to have (not descriptive text, not a corrections-table SKIP).
func answerItems(def *Instrument) int {
	n := 0
	for _, f := range def.Fields {
		if f.FieldType != "descriptive" && !def.Skip[f.FieldName] {
			n++
		}
	}
	return n
}

// formCounts is how many of the definition's items each site form holds.
func (dm *defMatch) formCounts() map[string]int {
	out := map[string]int{}
	for _, m := range dm.found {
		if m.f.FieldType != "descriptive" {
			out[m.f.FormName]++
		}
	}
	return out
}

// claims lists every site field the match speaks for (found items and the
// candidates of ambiguous or conflicting ones), so none is "extra".
func (dm *defMatch) claims() []*messages.Field {
	var out []*messages.Field
	for _, m := range dm.found {
		out = append(out, m.f)
	}
	for _, is := range dm.issues {
		out = append(out, is.cands...)
	}
	return out
}

// matchDef finds a definition's items at the site: by name (and the
// accepted variants) anywhere in the project, then by content among the
// site fields no library item claims by name. Memoised per check.
func (c *checker) matchDef(def *Instrument) *defMatch {
	if dm, ok := c.defs[def]; ok {
		return dm
	}
	dm := &defMatch{def: def, found: map[string]siteMatch{}, issues: map[string]itemIssue{}}
	c.defs[def] = dm
	var pending []int
	for i, pf := range def.Fields {
		if def.Skip[pf.FieldName] {
			continue
		}
		if sf, renamed := c.x.lookup(pf.FieldName, def.FieldAliases[pf.FieldName]); sf != nil {
			by := byName
			if renamed {
				by = byNameVariant
			}
			dm.found[pf.FieldName] = siteMatch{f: sf, by: by}
			continue
		}
		if pf.FieldType != "descriptive" {
			pending = append(pending, i)
		}
	}
	if len(pending) > 0 {
		c.matchByContent(dm, pending)
	}
	return dm
}

type pair struct {
	li, si int
	ps     pairScore
}

// matchByContent pairs the definition's unfound items with unclaimed site
// fields, best scores first; a tie (two site fields for one item, or one
// site field for two items) is reported, not broken.
func (c *checker) matchByContent(dm *defMatch, pending []int) {
	idx := c.content()
	if len(idx.cands) == 0 {
		return
	}
	pairs, conflicts := scorePairs(dm.def, idx, pending)
	libDone, siteTaken := assignPairs(dm, idx, pairs)
	for _, li := range pending {
		if !libDone[li] {
			addConflict(dm, idx, li, conflicts[li], siteTaken)
		}
	}
}

// scorePairs scores each pending item against the site fields that share
// a word with it: the pairs good enough for a rename, best first, and per
// item the pairs whose wording fits but whose answers do not.
func scorePairs(def *Instrument, idx *contentIndex, pending []int) ([]pair, map[int][]pair) {
	var pairs []pair
	conflicts := map[int][]pair{}
	for _, li := range pending {
		lf := featuresOf(&def.Fields[li])
		for _, si := range idx.candidatesFor(lf) {
			ps := scorePair(lf, idx.feats[si])
			switch {
			case ps.accepted():
				pairs = append(pairs, pair{li, si, ps})
			case ps.conflicting():
				conflicts[li] = append(conflicts[li], pair{li, si, ps})
			}
		}
	}
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].ps.score > pairs[j].ps.score })
	return pairs, conflicts
}

// assignPairs takes the pairs best first; a pair with a rival as good (for
// its item or for its site field) makes an ambiguity instead.
func assignPairs(dm *defMatch, idx *contentIndex, pairs []pair) (libDone, siteTaken map[int]bool) {
	def := dm.def
	byLib, bySite := map[int][]int{}, map[int][]int{}
	for k, p := range pairs {
		byLib[p.li] = append(byLib[p.li], k)
		bySite[p.si] = append(bySite[p.si], k)
	}
	libDone, siteTaken = map[int]bool{}, map[int]bool{}
	for _, p := range pairs {
		if libDone[p.li] || siteTaken[p.si] {
			continue
		}
		floor := p.ps.score - tieMargin
		var sites, libs []int
		for _, k := range byLib[p.li] {
			if q := pairs[k]; !siteTaken[q.si] && q.ps.score >= floor {
				sites = append(sites, q.si)
			}
		}
		for _, k := range bySite[p.si] {
			if q := pairs[k]; !libDone[q.li] && q.ps.score >= floor {
				libs = append(libs, q.li)
			}
		}
		if len(sites) == 1 && len(libs) == 1 {
			libDone[p.li], siteTaken[p.si] = true, true
			dm.found[def.Fields[p.li].FieldName] = siteMatch{f: idx.cands[p.si], by: byContent, ps: p.ps}
			dm.viaContent++
			continue
		}
		var cands []*messages.Field
		for _, si := range sites {
			siteTaken[si] = true
			cands = append(cands, idx.cands[si])
		}
		for _, li := range libs {
			libDone[li] = true
			var others []string
			for _, o := range libs {
				if o != li {
					others = append(others, def.Fields[o].FieldName)
				}
			}
			dm.issues[def.Fields[li].FieldName] = itemIssue{kind: KindFieldAmbiguous, cands: cands, others: others, ps: p.ps}
		}
	}
	return libDone, siteTaken
}

// addConflict reports an unmatched item whose wording a free site field
// has with other answers (every such field as close as the closest).
func addConflict(dm *defMatch, idx *contentIndex, li int, cs []pair, siteTaken map[int]bool) {
	if len(cs) == 0 {
		return
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].ps.wording > cs[j].ps.wording })
	var cands []*messages.Field
	for _, p := range cs {
		if !siteTaken[p.si] && p.ps.wording >= cs[0].ps.wording-tieMargin {
			cands = append(cands, idx.cands[p.si])
		}
	}
	if len(cands) == 0 {
		return
	}
	for _, p := range cs {
		siteTaken[p.si] = true
	}
	dm.issues[dm.def.Fields[li].FieldName] = itemIssue{kind: KindFieldConflict, cands: cands, ps: cs[0].ps}
}

// contentIndex holds the site fields content matching may use: those no
// library item claims by name (not the record ID, not descriptive text),
// with their features and an index of their words.
type contentIndex struct {
	cands []*messages.Field
	feats []*itemFeatures
	post  map[string][]int
	maxDF int
}

func (c *checker) content() *contentIndex {
	if c.idx != nil {
		return c.idx
	}
	claimed := map[string]bool{}
	for _, list := range [][]Instrument{c.p.Instruments, c.p.Substitutes} {
		for i := range list {
			def := &list[i]
			for _, pf := range def.Fields {
				if sf, _ := c.x.lookup(pf.FieldName, def.FieldAliases[pf.FieldName]); sf != nil {
					claimed[sf.FieldName] = true
				}
			}
		}
	}
	idx := &contentIndex{post: map[string][]int{}}
	for i := range c.x.meta.Fields {
		f := &c.x.meta.Fields[i]
		if claimed[f.FieldName] || f.FieldName == c.x.recordID || f.FieldType == "descriptive" {
			continue
		}
		ft := featuresOf(f)
		if len(ft.words) == 0 {
			continue
		}
		n := len(idx.cands)
		idx.cands = append(idx.cands, f)
		idx.feats = append(idx.feats, ft)
		for _, w := range ft.words {
			idx.post[w] = append(idx.post[w], n)
		}
	}
	// words in more than this many site fields ("the", "pain") do not
	// find candidates on their own
	idx.maxDF = max(64, len(idx.cands)/20)
	c.idx = idx
	return idx
}

// candidatesFor lists the site fields sharing a distinctive word with the
// library item (all of them when every word of the item is common).
func (idx *contentIndex) candidatesFor(lf *itemFeatures) []int {
	seen := map[int]bool{}
	var out []int
	rare := false
	for _, w := range lf.words {
		p := idx.post[w]
		if len(p) > idx.maxDF {
			continue
		}
		rare = true
		for _, i := range p {
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	if !rare && len(lf.words) > 0 {
		for i := range idx.cands {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}
