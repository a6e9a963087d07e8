package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// DLQFilter selects dead letters by stage and site ("" = any).
type DLQFilter struct{ Stage, Site string }

// Subject is the DLQ subject filter.
func (f DLQFilter) Subject() string {
	return messages.SubjectDLQ + "." + orStar(f.Stage) + "." + orStar(f.Site)
}

func orStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

// DeadLetterEntry is one dead letter held in the DLQ stream.
type DeadLetterEntry struct {
	Seq     uint64              `json:"seq"`
	Time    time.Time           `json:"time"`
	Subject string              `json:"subject"`
	Letter  messages.DeadLetter `json:"dead_letter"`
	// Unreadable is set when the body is not a DeadLetter (it is then
	// never printed: it could hold anything).
	Unreadable bool `json:"unreadable,omitempty"`
}

func entryFrom(seq uint64, t time.Time, subject string, data []byte) DeadLetterEntry {
	e := DeadLetterEntry{Seq: seq, Time: t, Subject: subject}
	if err := json.Unmarshal(data, &e.Letter); err != nil {
		e.Unreadable = true
		e.Letter = messages.DeadLetter{}
		if stage, site, ok := parseDLQSubject(subject); ok {
			e.Letter.Stage, e.Letter.Site = stage, site
		}
	}
	return e
}

// ListDLQ returns the dead letters matching f, oldest first, at most limit
// (0 = all).
func ListDLQ(ctx context.Context, js jetstream.JetStream, f DLQFilter, limit int) ([]DeadLetterEntry, error) {
	var out []DeadLetterEntry
	err := scan(ctx, js, messages.StreamDLQ, []string{f.Subject()}, time.Time{}, 0, func(m jetstream.Msg) bool {
		md, err := m.Metadata()
		if err != nil {
			return true
		}
		out = append(out, entryFrom(md.Sequence.Stream, md.Timestamp, m.Subject(), m.Data()))
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// GetDLQ reads one dead letter by its DLQ stream sequence.
func GetDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) (*DeadLetterEntry, error) {
	s, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamDLQ, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("no dead letter %d (list them with `relay dlq list`)", seq)
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	e := entryFrom(m.Sequence, m.Time, m.Subject, m.Data)
	return &e, nil
}

// Redacted is the dead letter with every value in its payload replaced by
// "[redacted]": field names and the envelope (site, run, versions, hashes)
// stay, so the operator can see which record and which fields failed
// without seeing PHI.
func (e DeadLetterEntry) Redacted() messages.DeadLetter {
	dl := e.Letter
	dl.Payload = RedactPayload(dl.Payload)
	return dl
}

// envelopeKeys are payload keys whose values are never PHI.
var envelopeKeys = map[string]bool{
	"v": true, "site": true, "run_id": true, "version": true, "hash": true, "metadata_hash": true,
	"policy_version": true, "deleted": true, "exported_at": true, "cleaned_at": true, "requested_at": true,
	"dest_record_id": true, "dag": true, "full": true, "reason": true, "taken_at": true,
}

// structureKeys are the columns of a record's rows that say which event and
// repeat instance a row is: an operator needs them to act, and they are the
// project's design, not a participant's data.
var structureKeys = map[string]bool{
	"redcap_event_name": true, "redcap_repeat_instrument": true, "redcap_repeat_instance": true,
}

// Redacted marks a removed value.
const Redacted = "[redacted]"

// RedactPayload keeps a JSON payload's structure and keys and replaces the
// values (other than envelope keys at the top level) with "[redacted]".
func RedactPayload(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		b, _ := json.Marshal(Redacted)
		return b
	}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			if !envelopeKeys[k] {
				m[k] = redact(x)
			}
		}
	} else {
		v = redact(v)
	}
	b, _ := json.Marshal(v)
	return b
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, y := range x {
			if structureKeys[k] {
				continue
			}
			x[k] = redact(y)
		}
		return x
	case []any:
		for i, y := range x {
			x[i] = redact(y)
		}
		return x
	case nil:
		return nil
	case string:
		if x == "" {
			return "" // an empty value shows that the field was blank, not what it held
		}
	}
	return Redacted
}

// OriginalSubject is where a dead letter's payload goes back to.
func OriginalSubject(dl messages.DeadLetter) (string, error) {
	if dl.Subject != "" {
		return dl.Subject, nil
	}
	switch dl.Stage {
	case messages.StageExport:
		return messages.ExportRequestedSubject(dl.Site), nil
	case messages.StageTransform:
		return messages.RecordsRawSubject(dl.Site), nil
	case messages.StageImport:
		return messages.RecordsCleanSubject(dl.Site), nil
	case messages.StageCheck:
		return messages.MetadataSubject(dl.Site), nil
	}
	return "", fmt.Errorf("dead letter of stage %q names no original subject", dl.Stage)
}

// RetryDLQ republishes each dead letter's payload to its original subject
// with a new message ID ("dlqretry.<seq>", so a retry interrupted and run
// again is stored once) and then removes the dead letter. If the stage fails
// again, a new dead letter is written.
func RetryDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) (subject string, err error) {
	e, err := GetDLQ(ctx, js, seq)
	if err != nil {
		return "", err
	}
	if e.Unreadable {
		return "", fmt.Errorf("dead letter %d is not a readable dead letter; purge it with `relay dlq purge %d`", seq, seq)
	}
	dl := e.Letter
	if len(dl.Payload) == 0 || !json.Valid(dl.Payload) || bytes.Equal(bytes.TrimSpace(dl.Payload), []byte("null")) {
		return "", fmt.Errorf("dead letter %d (site %s, stage %s) kept no payload to retry: request a new export with `relay sync --site %s`", seq, dl.Site, dl.Stage, dl.Site)
	}
	subject, err = OriginalSubject(dl)
	if err != nil {
		return "", fmt.Errorf("dead letter %d: %w", seq, err)
	}
	m := nats.NewMsg(subject)
	m.Data = dl.Payload
	id := "dlqretry." + strconv.FormatUint(seq, 10)
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(broker.WatermillUUIDHeader, id)
	m.Header.Set(messages.HeaderSubject, subject)
	for k, v := range map[string]string{messages.HeaderSite: dl.Site, messages.HeaderRun: dl.RunID, messages.HeaderRecord: dl.RecordID} {
		if v != "" {
			m.Header.Set(k, v)
		}
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return "", fmt.Errorf("dead letter %d: republish to %s: %w", seq, subject, err)
	}
	if err := deleteDLQ(ctx, js, seq); err != nil {
		return subject, fmt.Errorf("dead letter %d was retried on %s but not removed (retrying it again is safe): %w", seq, subject, err)
	}
	return subject, nil
}

// DeleteDLQ removes dead letters by sequence.
func DeleteDLQ(ctx context.Context, js jetstream.JetStream, seqs ...uint64) (int, error) {
	n := 0
	for _, seq := range seqs {
		if err := deleteDLQ(ctx, js, seq); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func deleteDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	s, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return fmt.Errorf("stream %s: %w", messages.StreamDLQ, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("no dead letter %d", seq)
		}
		return fmt.Errorf("remove dead letter %d: %w", seq, err)
	}
	return nil
}

// PurgeDLQ removes every dead letter matching f and returns how many.
func PurgeDLQ(ctx context.Context, js jetstream.JetStream, f DLQFilter) (uint64, error) {
	s, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", messages.StreamDLQ, err)
	}
	n, err := countFrom(ctx, js, messages.StreamDLQ, f.Subject(), time.Time{}, 0)
	if err != nil {
		return 0, err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(f.Subject())); err != nil {
		return 0, fmt.Errorf("purge %s: %w", f.Subject(), err)
	}
	return n, nil
}

// WriteDLQTable prints dead letters for people: no payloads.
func WriteDLQTable(w io.Writer, es []DeadLetterEntry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tWHEN\tSTAGE\tSITE\tRUN\tRECORD\tATTEMPTS\tERROR")
	for _, e := range es {
		l := e.Letter
		msg := oneLine(l.Error)
		if e.Unreadable {
			msg = "(unreadable dead letter)"
		}
		if len(msg) > 120 {
			msg = msg[:117] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), l.Stage, l.Site, dash(l.RunID), dash(l.RecordID), l.Attempts, msg)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine folds a multi-line error (a policy refusal lists one problem a
// line) into one table cell; `relay dlq show` prints it whole.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i]), "- "))
	}
	return strings.Join(lines, "; ")
}
