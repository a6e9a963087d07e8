package heal

import (
	"regexp"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/heal/vlmd"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

// Standards mappings come from the protocol check run over the
// destination's own dictionary: it finds, for every core instrument, the
// destination form that holds it (by name, alias or items; a substitute
// counts as itself) and, per library item, the destination field (its own
// name or a known variant). A site field renamed by its policy arrives
// under the name it was renamed to, so it maps to that library item.
// Fields outside the library carry no mapping.

// cdeItem is the library instrument and item one destination column holds.
type cdeItem struct {
	inst *protocol.Instrument
	item string // library variable (checkbox: variable___code)
	lib  messages.Field
}

// cdeMap maps destination columns to library items, with the protocol
// check of the destination it comes from.
func cdeMap(p *protocol.Protocol, dest *messages.MetadataSnapshot) (map[string]cdeItem, *protocol.Report) {
	r := protocol.Check(p, "destination", dest, nil)
	renamed := map[[2]string]string{} // (instrument, library field) -> destination field
	for _, f := range r.Findings {
		if f.Field != "" && f.SiteField != "" {
			renamed[[2]string{f.Instrument, f.Field}] = f.SiteField
		}
	}
	destFields := map[string]messages.Field{}
	for _, f := range dest.Fields {
		destFields[f.FieldName] = f
	}
	out := map[string]cdeItem{}
	for _, pi := range r.Instruments {
		if pi.Form == "" {
			continue
		}
		def := p.Instrument(pi.Instrument)
		if pi.Substitute != "" {
			def = p.Instrument(pi.Substitute)
		}
		if def == nil {
			continue
		}
		for _, lf := range def.Fields {
			if lf.FieldType == "descriptive" || def.Skip[lf.FieldName] {
				continue
			}
			name := lf.FieldName
			if n, ok := renamed[[2]string{pi.Instrument, lf.FieldName}]; ok {
				name = n
			}
			df, ok := destFields[name]
			if !ok {
				continue
			}
			if df.FieldType == "checkbox" {
				for _, code := range choiceCodes(df.SelectChoicesOrCalculations) {
					suffix := "___" + vlmd.CheckboxSuffix(code)
					out[name+suffix] = cdeItem{inst: def, item: lf.FieldName + suffix, lib: lf}
				}
				continue
			}
			out[name] = cdeItem{inst: def, item: lf.FieldName, lib: lf}
		}
	}
	return out, r
}

// mapping is the VLMD standards mapping of one column, nil without a CDE id.
func (it cdeItem) mapping(p *protocol.Protocol) *vlmd.StandardsMapping {
	ids, ok := p.CRFIDs(it.inst)
	if !ok {
		return nil
	}
	id := ids.CURIE
	if id == "" {
		id = ids.HDP
	}
	return &vlmd.StandardsMapping{
		Instrument: &vlmd.Ref{Source: vlmd.SourceHEALCDE, Title: ids.Name, ID: id},
		Item:       &vlmd.Ref{Source: vlmd.SourceHEALCDE, ID: it.item},
	}
}

// HEAL's missing-value categories, and the answer labels that mean them.
var missingLabels = []struct {
	re       *regexp.Regexp
	category string
}{
	{regexp.MustCompile(`(?i)^(don'?t|do not) know|^unknown$|^not sure$`), "Don't know"},
	{regexp.MustCompile(`(?i)^(refused|prefer not to (answer|say)|decline[sd]? to answer|rather not (say|answer))$`), "Refused"},
	{regexp.MustCompile(`(?i)^no answer$`), "No answer"},
	{regexp.MustCompile(`(?i)^(legitimately skipped|not applicable|n/?a)$`), "Legitimately skipped"},
	{regexp.MustCompile(`(?i)^not collected$`), "Not collected"},
	{regexp.MustCompile(`(?i)^missing in error$`), "Missing in error"},
}

// missingCodes are the answer codes of a library item that the protocol
// labels as one of HEAL's missing-value categories (e.g. 98 "Prefer not to
// answer" is Refused), limited to codes the destination field has.
func missingCodes(lib, dest messages.Field) (codes []string, categories vlmd.Pairs) {
	have := map[string]bool{}
	for _, c := range choiceCodes(dest.SelectChoicesOrCalculations) {
		have[c] = true
	}
	for _, part := range strings.Split(lib.SelectChoicesOrCalculations, "|") {
		code, label, ok := strings.Cut(part, ",")
		code, label = strings.TrimSpace(code), strings.TrimSpace(label)
		if !ok || !have[code] {
			continue
		}
		for _, m := range missingLabels {
			if m.re.MatchString(label) {
				codes = append(codes, code)
				categories = append(categories, vlmd.Pair{Key: code, Value: m.category})
				break
			}
		}
	}
	return codes, categories
}

func choiceCodes(s string) []string {
	var out []string
	for _, part := range strings.Split(s, "|") {
		code, _, ok := strings.Cut(part, ",")
		if code = strings.TrimSpace(code); ok && code != "" {
			out = append(out, code)
		}
	}
	return out
}
