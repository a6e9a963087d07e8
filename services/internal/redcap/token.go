package redcap

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadToken reads an API token from file (whitespace trimmed) or, when file
// is "", from the environment variable env. Errors name the file or the
// variable, never the token.
func ReadToken(file, env string) (string, error) {
	var tok, src string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is already in our message
			}
			return "", fmt.Errorf("token file %s: %w", file, err)
		}
		tok, src = strings.TrimSpace(string(b)), "token file "+file
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("token environment variable %s is not set", env)
		}
		tok, src = strings.TrimSpace(v), "token environment variable "+env
	default:
		return "", errors.New("no token file or environment variable given")
	}
	if tok == "" {
		return "", fmt.Errorf("%s is empty", src)
	}
	if !tokenRE.MatchString(tok) {
		return "", fmt.Errorf("%s does not hold a REDCap API token (letters and digits only, usually 32 hex characters); check for quotes or other characters", src)
	}
	return tok, nil
}
