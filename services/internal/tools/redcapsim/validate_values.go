package redcapsim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

const msgFormat = "The value you provided could not be validated because it does not follow the expected format. Please try again."

var (
	reNumber      = regexp.MustCompile(`^[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$`)
	reNumberComma = regexp.MustCompile(`^[-+]?[0-9]*,?[0-9]+([eE][-+]?[0-9]+)?$`)
	reNumberDP    = regexp.MustCompile(`^number_(\d)dp(_comma_decimal)?$`)
	reEmail       = regexp.MustCompile(`^(?i)[a-z0-9!#$%&'*+/=?^_` + "`" + `{|}~.-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$`)
	rePhone       = regexp.MustCompile(`^(?:\+?1[-. ]?)?\(?([2-9][0-9]{2})\)?[-. ]?([2-9][0-9]{2})[-. ]?([0-9]{4})(?:\s*(?:#|x\.?|ext\.?|extension)\s*\d+)?$`)
	reZip         = regexp.MustCompile(`^\d{5}(-\d{4})?$`)
	reTime        = regexp.MustCompile(`^([01]?[0-9]|2[0-3]):[0-5][0-9]$`)
	reTimeMMSS    = regexp.MustCompile(`^[0-5][0-9]:[0-5][0-9]$`)
	reTimeHHMMSS  = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$`)
	reAlpha       = regexp.MustCompile(`^[A-Za-z]+$`)
)

// normDate reads a date in the import's dateFormat (YMD, MDY or DMY) and
// returns it as REDCap stores it (Y-M-D).
func normDate(v, dateFormat string) (string, bool) {
	p1, p2, p3, ok := dateParts(v)
	if !ok {
		return "", false
	}
	var y, mo, d string
	switch dateFormat {
	case "MDY":
		mo, d, y = p1, p2, p3
	case "DMY":
		d, mo, y = p1, p2, p3
	default:
		y, mo, d = p1, p2, p3
	}
	if len(y) != 4 || len(mo) > 2 || len(d) > 2 {
		return "", false
	}
	yi, _ := strconv.Atoi(y)
	mi, _ := strconv.Atoi(mo)
	di, _ := strconv.Atoi(d)
	if mi < 1 || mi > 12 || di < 1 || di > daysIn(yi, mi) {
		return "", false
	}
	if len(mo) == 2 && len(d) == 2 && y == v[:4] && v[4] == '-' && v[7] == '-' {
		return v, true // already Y-M-D
	}
	return fmt.Sprintf("%04d-%02d-%02d", yi, mi, di), true
}

// dateParts splits "a-b-c" or "a/b/c" (digits: 1-4, 1-2, 1-4 long, as
// reDateParts did).
func dateParts(v string) (string, string, string, bool) {
	sep := func(c byte) bool { return c == '-' || c == '/' }
	var parts [3]string
	start, n := 0, 0
	for i := 0; i <= len(v); i++ {
		if i < len(v) && !sep(v[i]) {
			if v[i] < '0' || v[i] > '9' {
				return "", "", "", false
			}
			continue
		}
		if n == 3 || i == start {
			return "", "", "", false
		}
		parts[n] = v[start:i]
		n++
		start = i + 1
	}
	if n != 3 || len(parts[0]) > 4 || len(parts[1]) > 2 || len(parts[2]) > 4 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// isInteger is reInteger (^[-+]?\d+$) without the regexp.
func isInteger(v string) bool {
	if v != "" && (v[0] == '-' || v[0] == '+') {
		v = v[1:]
	}
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// normValue validates one non-empty value of a text field by its
// validation type and returns the value to store.
func normValue(validation, v, dateFormat string) (string, bool) {
	switch {
	case validation == "":
		return v, true
	case strings.HasPrefix(validation, "date_"):
		return normDate(v, dateFormat)
	case strings.HasPrefix(validation, "datetime_"):
		seconds := strings.HasPrefix(validation, "datetime_seconds_")
		d, t, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok {
			return "", false
		}
		nd, ok := normDate(d, dateFormat)
		if !ok {
			return "", false
		}
		if seconds {
			if !reTimeHHMMSS.MatchString(t) {
				return "", false
			}
		} else if !reTime.MatchString(t) || len(t) != 5 {
			return "", false
		}
		return nd + " " + t, true
	case validation == "time":
		return v, reTime.MatchString(v) && len(v) == 5
	case validation == "time_mm_ss":
		return v, reTimeMMSS.MatchString(v)
	case validation == "time_hh_mm_ss":
		return v, reTimeHHMMSS.MatchString(v)
	case validation == "integer":
		return v, isInteger(v)
	case validation == "number":
		return v, reNumber.MatchString(v)
	case validation == "number_comma_decimal":
		return v, reNumberComma.MatchString(v)
	case validation == "email":
		return v, reEmail.MatchString(v)
	case validation == "phone":
		return v, rePhone.MatchString(v)
	case validation == "zipcode":
		return v, reZip.MatchString(v)
	case validation == "alpha_only":
		return v, reAlpha.MatchString(v)
	}
	if m := reNumberDP.FindStringSubmatch(validation); m != nil {
		n, _ := strconv.Atoi(m[1])
		return v, dpRE[n][boolIdx(m[2] != "")].MatchString(v)
	}
	// Validation types the simulator does not know are accepted as text.
	return v, true
}

// dpRE[n][comma] checks number_<n>dp and number_<n>dp_comma_decimal.
var dpRE [10][2]*regexp.Regexp

func init() {
	for n := 0; n < 10; n++ {
		dpRE[n][0] = regexp.MustCompile(`^[-+]?\d+\.\d{` + strconv.Itoa(n) + `}$`)
		dpRE[n][1] = regexp.MustCompile(`^[-+]?\d+,\d{` + strconv.Itoa(n) + `}$`)
	}
}

func boolIdx(b bool) int {
	if b {
		return 1
	}
	return 0
}
