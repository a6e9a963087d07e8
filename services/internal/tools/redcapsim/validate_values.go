package redcapsim

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

const msgFormat = "The value you provided could not be validated because it does not follow the expected format. Please try again."

var (
	reInteger     = regexp.MustCompile(`^[-+]?\d+$`)
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
	reDateParts   = regexp.MustCompile(`^(\d{1,4})[-/](\d{1,2})[-/](\d{1,4})$`)
)

// normDate reads a date in the import's dateFormat (YMD, MDY or DMY) and
// returns it as REDCap stores it (Y-M-D).
func normDate(v, dateFormat string) (string, bool) {
	m := reDateParts.FindStringSubmatch(v)
	if m == nil {
		return "", false
	}
	var y, mo, d string
	switch dateFormat {
	case "MDY":
		mo, d, y = m[1], m[2], m[3]
	case "DMY":
		d, mo, y = m[1], m[2], m[3]
	default:
		y, mo, d = m[1], m[2], m[3]
	}
	if len(y) != 4 {
		return "", false
	}
	yi, _ := strconv.Atoi(y)
	mi, _ := strconv.Atoi(mo)
	di, _ := strconv.Atoi(d)
	t := time.Date(yi, time.Month(mi), di, 0, 0, 0, 0, time.UTC)
	if t.Year() != yi || int(t.Month()) != mi || t.Day() != di {
		return "", false
	}
	return t.Format("2006-01-02"), true
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
		return v, reInteger.MatchString(v)
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
