package heal

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redcap-relay/relay/services/internal/redcap"
)

var zeroTime time.Time

// destErr names the call and, for a refusal, the remedy: the export reads
// the destination with destination.export_token (or destination.token),
// which needs REDCap's API Export right.
func destErr(call string, err error) error {
	var re *redcap.Error
	if errors.As(err, &re) && re.Status == http.StatusForbidden {
		return fmt.Errorf("destination: %s: the token has no right to export (REDCap: %s): give the export a token with the API Export right as destination.export_token in the network file (a read-only token is enough)", call, re.Message)
	}
	return fmt.Errorf("destination: %s: %w", call, err)
}
