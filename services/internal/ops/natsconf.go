package ops

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// PasswordEnvPrefix names the variables deploy/nats/nats.conf reads its
// users' passwords from (RELAY_NATS_PASSWORD_EXPORTER, ...).
const PasswordEnvPrefix = "RELAY_NATS_PASSWORD_"

var (
	passwordRe = regexp.MustCompile(`^[A-Za-z0-9_\-+/=.]{12,200}$`)
	// bcryptRe is a bcrypt hash (relay nats hash-password): the server
	// compares clients' passwords with it and never holds them.
	bcryptRe = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)
)

// PasswordEnvFromFiles sets RELAY_NATS_PASSWORD_<USER> from the file named by
// RELAY_NATS_PASSWORD_<USER>_FILE (a compose secret: the user's bcrypt hash,
// or its password), for every such
// variable, so the NATS config file can say `password: $RELAY_NATS_PASSWORD_EXPORTER`
// while the password itself lives only in the secret file. The value is set
// quoted, so the config parser always reads it as a string. It returns the
// users it set; errors name the variable and file, never the password.
func PasswordEnvFromFiles() ([]string, error) {
	var set []string
	for _, kv := range os.Environ() {
		name, path, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, PasswordEnvPrefix) || !strings.HasSuffix(name, "_FILE") {
			continue
		}
		target := strings.TrimSuffix(name, "_FILE")
		b, err := os.ReadFile(path)
		if err != nil {
			return set, fmt.Errorf("%s: cannot read the password file: %w (is the compose secret defined and the file present?)", name, err)
		}
		pw := strings.TrimSpace(string(b))
		if !passwordRe.MatchString(pw) && !bcryptRe.MatchString(pw) {
			return set, fmt.Errorf("%s: %s must hold a bcrypt hash (relay nats hash-password) or a password of 12-200 characters of letters, digits and _-+/=. (generate one with `openssl rand -hex 24`)", name, path)
		}
		if err := os.Setenv(target, `"`+pw+`"`); err != nil {
			return set, err
		}
		set = append(set, strings.ToLower(strings.TrimPrefix(target, PasswordEnvPrefix)))
	}
	return set, nil
}
