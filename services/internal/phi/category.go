// Package phi decides whether a REDCap field looks like an identifier, and
// why: the one detector that the transfer policy (which then requires a
// rule for the field) and the protocol check (which asks the site to flag
// it Identifier?) both use.
//
// A detection names its basis (what it rests on: the Identifier? flag, a
// validation type, the field name, a date, free text, a file upload) and
// the HIPAA Safe Harbor identifier categories (45 CFR 164.514(b)(2)(i),
// A to R) it comes from. Field names are split into tokens (snake case,
// camel case, digits, and run-together words such as "ptname") and matched
// against a lexicon of words, abbreviations and synonyms per category,
// whatever the field's validation type: a field named like an SSN is an
// identifier even when validated as an integer.
package phi

// Category is one of the 18 HIPAA Safe Harbor identifier categories.
type Category string

// The Safe Harbor categories, in the order of the rule (A to R).
const (
	Names      Category = "names"
	Geographic Category = "geographic"
	Dates      Category = "dates"
	Phone      Category = "phone"
	Fax        Category = "fax"
	Email      Category = "email"
	SSN        Category = "ssn"
	MRN        Category = "medical_record"
	HealthPlan Category = "health_plan"
	Account    Category = "account"
	License    Category = "certificate_license"
	Vehicle    Category = "vehicle"
	Device     Category = "device"
	URL        Category = "url"
	IP         Category = "ip_address"
	Biometric  Category = "biometric"
	Photo      Category = "photo"
	OtherID    Category = "other_unique_id"
)

// Categories lists all 18 categories in the rule's order.
var Categories = []Category{Names, Geographic, Dates, Phone, Fax, Email, SSN, MRN, HealthPlan, Account,
	License, Vehicle, Device, URL, IP, Biometric, Photo, OtherID}

var labels = map[Category]string{
	Names:      "names",
	Geographic: "geographic units smaller than a state",
	Dates:      "dates other than year, ages over 89",
	Phone:      "telephone numbers",
	Fax:        "fax numbers",
	Email:      "e-mail addresses",
	SSN:        "social security numbers",
	MRN:        "medical record numbers",
	HealthPlan: "health plan beneficiary numbers",
	Account:    "account numbers",
	License:    "certificate and licence numbers",
	Vehicle:    "vehicle identifiers",
	Device:     "device identifiers and serial numbers",
	URL:        "web URLs",
	IP:         "IP addresses",
	Biometric:  "biometric identifiers",
	Photo:      "photographs and comparable images",
	OtherID:    "other unique identifying numbers or codes",
}

// Label is the category in plain words, with its letter in the rule,
// e.g. "(D) telephone numbers".
func (c Category) Label() string {
	for i, x := range Categories {
		if x == c {
			return "(" + string(rune('A'+i)) + ") " + labels[c]
		}
	}
	return string(c)
}
