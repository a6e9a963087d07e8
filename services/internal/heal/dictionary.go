package heal

import (
	"fmt"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/heal/vlmd"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

// REDCap's pseudo-columns of a flat export, in REDCap's order after the
// record ID.
const (
	colEvent    = "redcap_event_name"
	colRepeat   = "redcap_repeat_instrument"
	colInstance = "redcap_repeat_instance"
	colDAG      = "redcap_data_access_group"
)

// layout is the package's columns: the dictionary's fields, which are
// exactly the data file's header, in the same order.
type layout struct {
	fields []vlmd.Field
	// exportFields are the destination fields to ask Export Records for
	// (checkboxes by base name, <form>_complete as columns).
	exportFields []string
	idField      string
	dags         bool
	multiRow     bool // a row per event or repeat instance
	// mapped counts released columns per core-library instrument.
	mapped   map[string]int
	warnings []string
}

// buildLayout maps the destination's dictionary to VLMD, keeping only the
// columns some chosen site's policy releases (plus REDCap's own columns for
// events, repeats and DAGs the destination uses), with standards mappings
// and missing-value codes from the protocol.
func buildLayout(p *protocol.Protocol, dest *messages.MetadataSnapshot, dags []messages.DAG, sites []*site) (*layout, error) {
	if len(dest.Fields) == 0 {
		return nil, fmt.Errorf("destination: the data dictionary is empty (does the token have export rights?)")
	}
	released := map[string]bool{}
	for _, s := range sites {
		for c := range s.released {
			released[c] = true
		}
	}
	all, warns := vlmd.FromREDCap(dest.Fields, dest.Instruments)
	L := &layout{idField: dest.Fields[0].FieldName, dags: len(dags) > 0, mapped: map[string]int{}}
	for _, w := range warns {
		if released[w.Field] || released[checkboxBase(w.Field)] || hasReleasedColumn(released, w.Field) {
			L.warnings = append(L.warnings, "destination "+w.String())
		}
	}
	cde, _ := cdeMap(p, dest)
	byName := map[string]messages.Field{}
	for _, f := range dest.Fields {
		byName[f.FieldName] = f
	}
	multiRow := dest.Project.IsLongitudinal == 1 || len(dest.Events) > 0 || dest.Project.HasRepeatingInstrumentsOrEvents == 1 || len(dest.Repeating) > 0
	L.multiRow = multiRow
	have := map[string]bool{}
	exportSeen := map[string]bool{}
	noCDE := map[string]int{}
	for _, f := range all {
		have[f.Name] = true
		if !released[f.Name] {
			continue
		}
		base := checkboxBase(f.Name)
		if multiRow && f.Name != L.idField && f.Constraints != nil && f.Constraints.Required {
			// REDCap's "required" holds where the form is entered; with a row
			// per event or repeat, other rows leave it empty.
			f.Constraints.Required = false
			f.Custom.Set("redcapRequired", "y")
		}
		if f.Name == L.idField {
			f.Cons().Required = true
			f.Description += " (destination record ID: see README.md for how IDs were assigned)"
		}
		if it, ok := cde[f.Name]; ok {
			L.mapped[it.inst.Name]++
			if m := it.mapping(p); m != nil {
				f.StandardsMappings = []vlmd.StandardsMapping{*m}
			} else {
				noCDE[it.inst.Name]++
			}
			if codes, cats := missingCodes(it.lib, byName[f.Name]); len(codes) > 0 {
				// The data's empty cells are missing too: a field that lists
				// missingValues replaces the default [""], so "" is listed.
				f.MissingValues = append(codes, "")
				f.Custom.Set("missingValueCategories", joinCats(cats))
			}
		}
		f.Finish()
		L.fields = append(L.fields, f)
		if !exportSeen[base] {
			exportSeen[base] = true
			L.exportFields = append(L.exportFields, base)
		}
		if f.Name == L.idField {
			L.fields = append(L.fields, systemFields(dest, dags)...)
		}
	}
	if len(L.fields) == 0 || L.fields[0].Name != L.idField {
		return nil, fmt.Errorf("destination: the record-ID field %s is not among the fields the sites' policies write", L.idField)
	}
	var missing []string
	for c := range released {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		L.warnings = append(L.warnings, fmt.Sprintf("policies write %d field(s) the destination's dictionary does not have (left out; the importer cannot write them either): %s", len(missing), strings.Join(missing, ", ")))
	}
	for _, name := range sortedKeys(noCDE) {
		in := p.Instrument(name)
		L.warnings = append(L.warnings, fmt.Sprintf("protocol instrument %s (%s) has no HEAL CDE id (its crf: is missing or not in the CRF table): its %d released field(s) carry no standards mapping", name, in.Label, noCDE[name]))
	}
	return L, nil
}

func hasReleasedColumn(released map[string]bool, field string) bool {
	for c := range released {
		if strings.HasPrefix(c, field+"___") {
			return true
		}
	}
	return false
}

// checkboxBase is the field a column belongs to (race___1 -> race).
func checkboxBase(col string) string {
	if i := strings.Index(col, "___"); i > 0 {
		return col[:i]
	}
	return col
}

func joinCats(ps vlmd.Pairs) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Key + ": " + p.Value
	}
	return strings.Join(parts, "; ")
}

// systemFields describes the columns REDCap adds to a flat export: the
// event (longitudinal projects), the repeating instrument and instance
// (projects with repeats), and the data access group (the site).
func systemFields(dest *messages.MetadataSnapshot, dags []messages.DAG) []vlmd.Field {
	var out []vlmd.Field
	sys := func(name, title, desc, typ string) vlmd.Field {
		return vlmd.Field{Section: "redcap", Name: name, Title: title, Description: desc, Type: typ,
			Custom: vlmd.Pairs{{Key: "redcapFieldType", Value: "export column"}}}
	}
	if dest.Project.IsLongitudinal == 1 || len(dest.Events) > 0 {
		f := sys(colEvent, "Event", "REDCap event (timepoint) of the row", "string")
		for _, e := range dest.Events {
			f.Cons().Enum = append(f.Cons().Enum, e.UniqueEventName)
			f.EnumLabels = append(f.EnumLabels, vlmd.Pair{Key: e.UniqueEventName, Value: e.EventName})
		}
		f.Finish()
		out = append(out, f)
	}
	if dest.Project.HasRepeatingInstrumentsOrEvents == 1 || len(dest.Repeating) > 0 {
		f := sys(colRepeat, "Repeating instrument", "REDCap repeating instrument of the row (empty: not a repeating row, or a repeating event)", "string")
		seen := map[string]bool{}
		for _, r := range dest.Repeating {
			if r.FormName != "" && !seen[r.FormName] {
				seen[r.FormName] = true
				f.Cons().Enum = append(f.Cons().Enum, r.FormName)
			}
		}
		f.Finish()
		out = append(out, f)
		g := sys(colInstance, "Repeat instance", "REDCap repeat instance number of the row (empty: not a repeating row)", "integer")
		one := int64(1)
		g.Cons().Minimum = &one
		out = append(out, g)
	}
	if len(dags) > 0 {
		f := sys(colDAG, "Site (data access group)", "REDCap data access group of the record at the destination: the site it came from", "string")
		for _, d := range dags {
			f.Cons().Enum = append(f.Cons().Enum, d.Unique)
			f.EnumLabels = append(f.EnumLabels, vlmd.Pair{Key: d.Unique, Value: d.Name})
		}
		f.Finish()
		out = append(out, f)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
