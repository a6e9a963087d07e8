package redcapsim

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// surveyTarget is a resolved survey call: record, survey form, event and
// repeat instance.
type surveyTarget struct {
	rec  string
	form int
	ev   int
	rep  int
	inst int
}

// surveyCode derives a stable code for a survey target (what REDCap keeps
// in its participant table): the same inputs give the same link, access
// code and return code, which makes tests reproducible. n characters from
// alphabet.
func (p *project) surveyCode(kind string, t surveyTarget, n int, alphabet string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%d\x00%s\x00%d\x00%d\x00%s", kind, p.id, p.created.UnixNano(), t.rec, t.form, t.ev, fmt.Sprint(t.inst))))
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[int(sum[i%len(sum)]+byte(i/len(sum)))%len(alphabet)]
	}
	return string(out)
}

const (
	hashAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	codeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789" // access and return codes: no look-alikes
)

// surveyTimestampValue validates a survey completion time: a time, or
// REDCap's "[not completed]" for a response started but not submitted.
func surveyTimestampValue(ts string) (string, error) {
	if ts == "[not completed]" || ts == "" {
		return ts, nil
	}
	t, err := time.Parse("2006-01-02 15:04:05", ts)
	if err != nil {
		return "", fmt.Errorf("a survey timestamp is \"YYYY-MM-DD HH:MM:SS\" or \"[not completed]\", not %q", ts)
	}
	return t.Format("2006-01-02 15:04:05"), nil
}
