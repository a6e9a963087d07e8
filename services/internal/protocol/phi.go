package protocol

import (
	"fmt"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// PHI hygiene: fields that look like identifiers but are not flagged
// Identifier? = y. REDCap's flag drives its own de-identified exports and
// user rights, so an unflagged SSN leaks through every "de-identified"
// export. Strong signs (validation types, names) are warnings; dates are
// infos (often legitimate visit dates, but Safe Harbor treats them as PHI).
var (
	phiValidations = []string{"email", "phone*", "ssn", "mrn_*", "vmrn", "zipcode", "postalcode_*"}
	phiSubstrings  = []string{"name", "address", "street", "birth", "email", "e_mail", "phone", "zip", "ssn", "mrn", "postal", "fax"}
	phiTokens      = []string{"first", "last", "city", "dob", "addr", "surname", "initials", "ip", "mobile", "cell"}
)

// IdentifierReason says why a field looks like an identifier ("" when it
// does not) and whether the sign is strong.
func IdentifierReason(f messages.Field) (reason string, strong bool) {
	if f.FieldType == "text" {
		v := strings.ToLower(strings.TrimSpace(f.TextValidationTypeOrShowSlider))
		for _, p := range phiValidations {
			if p == v || (strings.HasSuffix(p, "*") && strings.HasPrefix(v, strings.TrimSuffix(p, "*"))) {
				return "validation " + v, true
			}
		}
	}
	if f.FieldType == "descriptive" || f.FieldType == "calc" {
		return "", false
	}
	name := strings.ToLower(f.FieldName)
	for _, s := range phiSubstrings {
		if strings.Contains(name, s) {
			return fmt.Sprintf("name contains %q", s), true
		}
	}
	for _, tok := range strings.Split(name, "_") {
		for _, t := range phiTokens {
			if tok == t {
				return fmt.Sprintf("name part %q", t), true
			}
		}
	}
	if f.FieldType == "text" {
		v := strings.ToLower(strings.TrimSpace(f.TextValidationTypeOrShowSlider))
		if strings.HasPrefix(v, "date") {
			return "validation " + v, false
		}
	}
	return "", false
}

func (c *checker) checkPHI() {
	for i := range c.x.meta.Fields {
		f := &c.x.meta.Fields[i]
		if strings.EqualFold(strings.TrimSpace(f.Identifier), "y") || f.FieldName == c.x.recordID {
			continue
		}
		reason, strong := IdentifierReason(*f)
		if reason == "" {
			continue
		}
		sev := messages.SeverityInfo
		if strong {
			sev = messages.SeverityWarning
		}
		c.add(messages.ProtocolFinding{Severity: sev, Kind: KindPHI, Form: f.FormName, Field: f.FieldName,
			Expected: "identifier = y", Actual: reason,
			Message: fmt.Sprintf("field %s looks like an identifier (%s) but is not flagged Identifier?: flag it so REDCap's de-identified exports and rights withhold it", f.FieldName, reason)})
	}
}
