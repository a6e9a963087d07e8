package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Domain separation: one key, several independent uses.
const (
	labelRecordID  = "relay/record-id/v1\x00"
	labelDateShift = "relay/date-shift/v1\x00"
	labelValue     = "relay/value/v1\x00"
)

// LowPopulationZIP3 are the 3-digit ZIP prefixes whose areas held 20,000
// people or fewer (2000 census, as listed by HHS for Safe Harbor): their
// ZIP3 becomes "000".
var LowPopulationZIP3 = []string{"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890", "893"}

var lowZIP3 = func() map[string]bool {
	m := map[string]bool{}
	for _, z := range LowPopulationZIP3 {
		m[z] = true
	}
	return m
}()

func keyedHex(key []byte, label, value string, n int) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil))[:n]
}

// DestRecordID is the record's ID at the destination: "<namespace>-<id>",
// or "<namespace>-<16 hex of HMAC(key, namespace, id)>" in hmac mode.
func (c *Compiled) DestRecordID(sourceID string) string {
	if c.recordMode == ModeHMAC {
		return c.opts.Namespace + "-" + keyedHex(c.opts.Key, labelRecordID, c.opts.Namespace+"\x00"+sourceID, 16)
	}
	return c.opts.Namespace + "-" + sourceID
}

// ShiftDays is the record's date offset: 0-364 days, from the pseudonym key,
// the namespace and the site record ID, so every date of a record moves by
// the same amount on every run and every replica.
func (c *Compiled) ShiftDays(sourceID string) int {
	m := hmac.New(sha256.New, c.opts.Key)
	m.Write([]byte(labelDateShift))
	m.Write([]byte(c.opts.Namespace + "\x00" + sourceID))
	return int(binary.BigEndian.Uint64(m.Sum(nil)[:8]) % 365)
}

// Rule errors say what is wrong with a value without quoting it.
var (
	errNotDate = errors.New("value is not a date REDCap exports (YYYY-MM-DD, YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS)")
	errNotZIP  = errors.New("value is not a US ZIP code (5 digits, or ZIP+4)")
	errNotAge  = errors.New("value is not a number")
)

var dateLayouts = map[dateKind]string{
	kindDate:            "2006-01-02",
	kindDatetime:        "2006-01-02 15:04",
	kindDatetimeSeconds: "2006-01-02 15:04:05",
}

// parseDate accepts the layout of the field's kind, and (leniently) the
// other REDCap layouts, since a survey timestamp and a datetime differ.
func parseDate(kind dateKind, v string) (time.Time, string, error) {
	if l, ok := dateLayouts[kind]; ok {
		if t, err := time.Parse(l, v); err == nil {
			return t, l, nil
		}
	}
	var layout string
	switch len(v) {
	case 10:
		layout = dateLayouts[kindDate]
	case 16:
		layout = dateLayouts[kindDatetime]
	case 19:
		layout = dateLayouts[kindDatetimeSeconds]
	default:
		return time.Time{}, "", errNotDate
	}
	t, err := time.Parse(layout, v)
	if err != nil {
		return time.Time{}, "", errNotDate
	}
	return t, layout, nil
}

func shiftDate(kind dateKind, v string, days int) (string, error) {
	t, layout, err := parseDate(kind, v)
	if err != nil {
		return "", err
	}
	return t.AddDate(0, 0, -days).Format(layout), nil
}

func yearOf(kind dateKind, v string) (string, error) {
	t, _, err := parseDate(kind, v)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(t.Year()), nil
}

// ZIP3 applies the Safe Harbor ZIP rule to a US ZIP ("12345" or
// "12345-6789" or "123456789").
func ZIP3(v string) (string, error) {
	d := strings.ReplaceAll(strings.TrimSpace(v), "-", "")
	if len(d) != 5 && len(d) != 9 {
		return "", errNotZIP
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", errNotZIP
		}
	}
	if lowZIP3[d[:3]] {
		return "000", nil
	}
	return d[:3], nil
}

// CapAgeValue applies the Safe Harbor age rule: 90 and over become "90".
func CapAgeValue(v string) (string, error) {
	s := strings.TrimSpace(v)
	f, err := strconv.ParseFloat(strings.Replace(s, ",", ".", 1), 64)
	if err != nil {
		return "", errNotAge
	}
	if f >= 90 {
		return "90", nil
	}
	return v, nil
}

// hashValue is the keyed hash of a value, trimmed and lowercased first:
// equal values hash equally across fields and sites ("Ann@X.org " and
// "ann@x.org" too), so hashed identifiers still link records.
func (c *Compiled) hashValue(v string) string {
	return keyedHex(c.opts.Key, labelValue, strings.ToLower(strings.TrimSpace(v)), 16)
}
