package protocol

import (
	"fmt"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/phi"
)

// PHI hygiene: fields that look like identifiers but are not flagged
// Identifier? = y. REDCap's flag drives its own de-identified exports and
// user rights, so an unflagged SSN leaks through every "de-identified"
// export. The detector is the transfer policy's (services/internal/phi):
// what the policy requires a rule for, the check asks the site to flag,
// except ages (Safe Harbor only groups those over 89, which the policy's
// cap_age does; flagging would drop every age) and free text and files
// (they may hold an identifier, they are not one). Names and validations
// are warnings; dates are notes (often visit dates, but Safe Harbor treats
// every date of a person as an identifier).

// IdentifierReason says why a field looks like an identifier that should
// be flagged ("" when it does not), whether the sign is strong, and the
// Safe Harbor categories it comes from.
func IdentifierReason(f messages.Field) (reason string, strong bool, cats []phi.Category) {
	var parts []string
	var ds []phi.Detection
	for _, d := range phi.Detect(f) {
		if !d.AsksFlag() {
			continue
		}
		ds = append(ds, d)
		parts = append(parts, d.Detail)
		if d.Strong() {
			strong = true
		}
	}
	return strings.Join(parts, "; "), strong, phi.CategoriesOf(ds)
}

func (c *checker) checkPHI() {
	for i := range c.x.meta.Fields {
		f := &c.x.meta.Fields[i]
		if strings.EqualFold(strings.TrimSpace(f.Identifier), "y") || f.FieldName == c.x.recordID {
			continue
		}
		reason, strong, cats := IdentifierReason(*f)
		if reason == "" {
			continue
		}
		sev := messages.SeverityInfo
		if strong {
			sev = messages.SeverityWarning
		}
		names := make([]string, len(cats))
		for i, c := range cats {
			names[i] = string(c)
		}
		c.add(messages.ProtocolFinding{Severity: sev, Kind: KindPHI, Form: f.FormName, Field: f.FieldName,
			Expected: "identifier = y", Actual: reason, Categories: names,
			Message: fmt.Sprintf("field %s looks like an identifier (%s; HIPAA Safe Harbor: %s) but is not flagged Identifier?: flag it so REDCap's de-identified exports and rights withhold it",
				f.FieldName, reason, phi.CategoryList(cats))})
	}
}
