package router

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// DeadLetter stores a dead letter on relay.dlq.<stage>.<site>, counts it in
// relay_dead_letters_total and logs it (the reason, never the payload). Every
// stage dead-letters through here.
//
// Its message ID names the failed delivery and its attempt: the same
// delivery dead-lettered twice (a lost ack) is stored once, but every other
// failure (a later attempt, or a `relay dlq retry` of the letter that fails
// again: the retry's message has an ID of its own) leaves a dead letter of
// its own. An ID built from the payload alone would let JetStream's
// duplicate window swallow the second failure of a retried letter.
func DeadLetter(ctx context.Context, js jetstream.JetStream, log *slog.Logger, dl messages.DeadLetter) error {
	dl.V = messages.V
	if dl.Site == "" {
		dl.Site = "unknown"
	}
	if dl.At.IsZero() {
		dl.At = time.Now().UTC()
	}
	if dl.Attempts < 1 {
		dl.Attempts = 1
	}
	if err := broker.Publish(ctx, js, messages.DLQSubject(dl.Stage, dl.Site), deadLetterID(dl),
		broker.Route{Site: dl.Site, Run: dl.RunID, Record: dl.RecordID}, dl); err != nil {
		return fmt.Errorf("site %s: store the dead letter of stage %s: %w", dl.Site, dl.Stage, err)
	}
	telemetry.DeadLetters.WithLabelValues(dl.Stage, dl.Site).Inc()
	if log != nil {
		log.Warn("dead-lettered", "stage", dl.Stage, "site", dl.Site, "run", dl.RunID, "record", dl.RecordID, "attempt", dl.Attempts, "reason", dl.Error)
	}
	return nil
}

func deadLetterID(dl messages.DeadLetter) string {
	what := dl.MsgID
	if what == "" {
		what = dl.RunID + "." + dl.RecordID + "." + messages.HashJSON(dl.Error)[:12]
	}
	return "dlq." + dl.Stage + "." + dl.Site + "." + what + ".a" + strconv.Itoa(dl.Attempts)
}
