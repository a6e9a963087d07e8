package demo

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Project is a synthetic REDCap project: its design and its participants.
type Project struct {
	Fields     []messages.Field
	Arms       []messages.Arm
	Events     []messages.Event
	FEM        []messages.FormEvent
	Repeating  []messages.RepeatingForm
	Rows       []messages.Row
	RecordIDs  []string
	repeatForm string
}

// synth makes plausible values for any data dictionary field, valid under
// REDCap's validation, from a seeded generator so that demo runs repeat.
type synth struct {
	r *rand.Rand
}

var (
	firstNames = []string{"Ada", "Ben", "Cora", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena", "Milo", "Nia", "Omar", "Pia"}
	lastNames  = []string{"Alder", "Birch", "Cedar", "Dogwood", "Elm", "Fir", "Gale", "Hazel", "Ivy", "Juniper", "Larch", "Maple"}
	streets    = []string{"Oak St", "Pine Ave", "River Rd", "Hill Ln", "Lake Dr"}
)

func (s synth) intn(n int) int { return s.r.IntN(n) }

// value returns a value for a non-checkbox field; ok is false for fields
// that hold no data (descriptive, calc, file).
func (s synth) value(f messages.Field) (string, bool) {
	switch f.FieldType {
	case "descriptive", "calc", "file", "sql":
		return "", false
	case "radio", "dropdown":
		codes := choiceCodes(f.SelectChoicesOrCalculations)
		if len(codes) == 0 {
			return "", false
		}
		return codes[s.intn(len(codes))], true
	case "yesno", "truefalse":
		return strconv.Itoa(s.intn(2)), true
	case "slider":
		return strconv.Itoa(s.intn(101)), true
	case "notes":
		return fmt.Sprintf("Participant reported %s; follow up at %d %s.", []string{"improvement", "no change", "worse pain"}[s.intn(3)], 100+s.intn(900), streets[s.intn(len(streets))]), true
	}
	name := strings.ToLower(f.FieldName)
	switch v := f.TextValidationTypeOrShowSlider; {
	case strings.HasPrefix(v, "date_"):
		return s.date(f).Format("2006-01-02"), true
	case strings.HasPrefix(v, "datetime_seconds"):
		return s.date(f).Add(time.Duration(s.intn(86400)) * time.Second).Format("2006-01-02 15:04:05"), true
	case strings.HasPrefix(v, "datetime"):
		return s.date(f).Add(time.Duration(s.intn(1440)) * time.Minute).Format("2006-01-02 15:04"), true
	case v == "time":
		return fmt.Sprintf("%02d:%02d", s.intn(24), s.intn(60)), true
	case v == "email":
		return fmt.Sprintf("%s.%d@example.org", strings.ToLower(firstNames[s.intn(len(firstNames))]), s.intn(1000)), true
	case v == "phone":
		return fmt.Sprintf("(555) %03d-%04d", 200+s.intn(700), s.intn(10000)), true
	case v == "zipcode":
		return fmt.Sprintf("%05d", 10000+s.intn(89999)), true
	case v == "integer":
		lo, hi := bounds(f, 0, 100)
		return strconv.Itoa(int(lo) + s.intn(int(hi-lo)+1)), true
	case strings.HasPrefix(v, "number"):
		lo, hi := bounds(f, 0, 100)
		x := lo + s.r.Float64()*(hi-lo)
		if strings.HasSuffix(v, "1dp") {
			return strconv.FormatFloat(x, 'f', 1, 64), true
		}
		return strconv.FormatFloat(x, 'f', 2, 64), true
	}
	switch {
	case strings.Contains(name, "first"):
		return firstNames[s.intn(len(firstNames))], true
	case strings.Contains(name, "last") || strings.Contains(name, "name"):
		return lastNames[s.intn(len(lastNames))], true
	case strings.Contains(name, "address") || strings.Contains(name, "street"):
		return fmt.Sprintf("%d %s", 1+s.intn(999), streets[s.intn(len(streets))]), true
	}
	return fmt.Sprintf("text %d", s.intn(100000)), true
}

func (s synth) date(f messages.Field) time.Time {
	if strings.Contains(strings.ToLower(f.FieldName), "dob") || strings.Contains(strings.ToLower(f.FieldName), "birth") {
		return time.Date(1935+s.intn(70), time.Month(1+s.intn(12)), 1+s.intn(28), 0, 0, 0, 0, time.UTC)
	}
	return time.Date(2025, time.Month(1+s.intn(12)), 1+s.intn(28), 0, 0, 0, 0, time.UTC)
}

func bounds(f messages.Field, lo, hi float64) (float64, float64) {
	if v, err := strconv.ParseFloat(f.TextValidationMin, 64); err == nil {
		lo = v
	}
	if v, err := strconv.ParseFloat(f.TextValidationMax, 64); err == nil {
		hi = v
	}
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

// choiceCodes parses "1, Yes | 0, No" into its codes.
func choiceCodes(choices string) []string {
	var out []string
	for _, c := range strings.Split(choices, "|") {
		code, _, _ := strings.Cut(c, ",")
		if code = strings.TrimSpace(code); code != "" {
			out = append(out, code)
		}
	}
	return out
}

// formRow fills one form's fields (and its _complete status) into row.
func (s synth) formRow(row messages.Row, fields []messages.Field, form string) {
	for _, f := range fields {
		if f.FormName != form || f.FieldName == fields[0].FieldName {
			continue
		}
		if f.FieldType == "checkbox" {
			for _, c := range choiceCodes(f.SelectChoicesOrCalculations) {
				row[f.FieldName+"___"+c] = strconv.Itoa(s.intn(2))
			}
			continue
		}
		// About 3% of items are left blank, as in real data.
		if s.intn(100) < 3 {
			continue
		}
		if v, ok := s.value(f); ok {
			row[f.FieldName] = v
		}
	}
	row[form+"_complete"] = []string{"2", "2", "2", "1", "0"}[s.intn(5)]
}
