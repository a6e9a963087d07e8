package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Streams is what a backup holds, in the order it is taken. Each stream is
// a consistent snapshot on its own; across streams, every cursor is taken
// before the data it points past (the exporters' cursors and record-ID sets
// before the records they exported, a stream before the stage downstream
// of it), so a backup taken while the pipeline works restores to a state
// that redoes a little work and loses none. The leases bucket is left out:
// it holds runs in progress, which a restored store must not believe in.
func Streams() []string {
	return []string{
		config.KVPrefix + messages.BucketSiteState,
		config.ObjPrefix + messages.BucketRecordIDs,
		config.ObjPrefix + messages.BucketDeletions,
		config.KVPrefix + messages.BucketDeletionDecisions,
		config.KVPrefix + messages.BucketMetadata,
		messages.StreamExportRequests,
		messages.StreamMetadata,
		messages.StreamRecordsRaw,
		messages.StreamRecordsClean,
		// After the records that refer to them, so every file a message
		// names is in the backup.
		config.ObjPrefix + messages.BucketFiles,
		config.KVPrefix + messages.BucketDestVersion,
		config.KVPrefix + messages.BucketDestFiles,
		messages.StreamAudit,
		config.ObjPrefix + messages.BucketDeletedRecords,
		messages.StreamDLQ,
		messages.StreamReports,
	}
}

// Options for Write.
type Options struct {
	// Key encrypts the file (a key derived from it); nil writes it plain.
	Key []byte
	// Relay is the version written into the file.
	Relay string
	Log   *slog.Logger
}

// StreamSummary is one stream in a backup.
type StreamSummary struct {
	Name      string
	Msgs      uint64
	Bytes     uint64 // as stored
	Consumers int
	Snapshot  int64 // bytes of its (compressed) snapshot in the file
}

// count reads the stream's size from its state as the server gave it.
func (ss *StreamSummary) count(state json.RawMessage) {
	var st struct {
		Msgs      uint64 `json:"messages"`
		Bytes     uint64 `json:"bytes"`
		Consumers int    `json:"consumer_count"`
	}
	_ = json.Unmarshal(state, &st)
	ss.Msgs, ss.Bytes, ss.Consumers = st.Msgs, st.Bytes, st.Consumers
}

// Summary is what a backup holds or a restore restored.
type Summary struct {
	Streams   []StreamSummary
	FileBytes int64
	Encrypted bool
	KeyID     string
	Busy      []string // work in progress when the backup was taken
	Created   time.Time
	Relay     string
}

// snapshotIdle bounds the wait for the server's next chunk.
const snapshotIdle = 30 * time.Second

// Write snapshots every stream of Streams() into w. It needs the admin
// NATS user (the JetStream snapshot API).
func Write(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, w io.Writer, o Options) (*Summary, error) {
	sum := &Summary{Encrypted: o.Key != nil, Created: time.Now().UTC(), Relay: o.Relay, Busy: busy(ctx, js)}
	for _, name := range Streams() {
		if _, err := js.Stream(ctx, name); err != nil {
			return nil, fmt.Errorf("stream %s: %w (run relay provision first: a backup must hold every stream)", name, err)
		}
	}
	about := About{Created: sum.Created, Relay: o.Relay, NATSServer: nc.ConnectedServerVersion()}
	fw, err := newFrameWriter(w, about, o.Key)
	if err != nil {
		return nil, writeErr(err)
	}
	if o.Key != nil {
		sum.KeyID = KeyID(o.Key)
	}
	if err := fw.json(frameHeader, header{Streams: Streams(), Busy: sum.Busy}); err != nil {
		return nil, writeErr(err)
	}
	for _, name := range Streams() {
		ss, err := snapshot(ctx, nc, name, fw)
		if err != nil {
			return nil, err
		}
		sum.Streams = append(sum.Streams, ss)
	}
	if err := fw.json(frameFinal, final{Streams: len(sum.Streams), Bytes: fw.wrote}); err != nil {
		return nil, writeErr(err)
	}
	sum.FileBytes = fw.wrote
	return sum, nil
}

// busy lists the site runs in progress and the stages' unfinished work.
func busy(ctx context.Context, js jetstream.JetStream) []string {
	var out []string
	if kv, err := js.KeyValue(ctx, messages.BucketLeases); err == nil {
		if keys, err := kv.Keys(ctx); err == nil {
			for _, k := range keys {
				out = append(out, "site "+k+": a run in progress")
			}
		}
	}
	for _, st := range topology.Stages {
		if n, err := broker.Backlog(ctx, js, st); err == nil && n > 0 && st.Name != messages.StageCheck {
			out = append(out, fmt.Sprintf("stage %s: %d message(s) not finished", st.Name, n))
		}
	}
	return out
}

// apiError is a JetStream API error.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%d)", e.Description, e.ErrCode) }

// snapshot streams one stream's snapshot (messages and consumers) into the
// file: the server sends chunks to an inbox, each acknowledged by replying.
func snapshot(ctx context.Context, nc *nats.Conn, name string, fw *frameWriter) (StreamSummary, error) {
	ss := StreamSummary{Name: name}
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return ss, fmt.Errorf("snapshot of %s: %w", name, err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "chunk_size": 128 << 10})
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.SNAPSHOT."+name, req)
	if err != nil {
		return ss, fmt.Errorf("snapshot of %s: %w", name, err)
	}
	var resp struct {
		Error  *apiError       `json:"error"`
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return ss, fmt.Errorf("snapshot of %s: %w", name, err)
	}
	if resp.Error != nil {
		return ss, fmt.Errorf("snapshot of %s: %w", name, resp.Error)
	}
	ss.count(resp.State)
	if err := fw.json(frameStream, streamStart{Name: name, Config: resp.Config, State: resp.State}); err != nil {
		return ss, writeErr(err)
	}
	h := sha256.New()
	for {
		wctx, cancel := context.WithTimeout(ctx, snapshotIdle)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			return ss, fmt.Errorf("snapshot of %s: no chunk from the server for %s: %w", name, snapshotIdle, err)
		}
		if len(m.Data) == 0 {
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return ss, fmt.Errorf("snapshot of %s: the server stopped it: %s %s", name, st, m.Header.Get("Description"))
			}
			break
		}
		if err := fw.frame(frameData, m.Data); err != nil {
			return ss, writeErr(err)
		}
		h.Write(m.Data)
		ss.Snapshot += int64(len(m.Data))
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return ss, fmt.Errorf("snapshot of %s: %w", name, err)
			}
		}
	}
	if err := fw.json(frameEnd, streamEnd{Name: name, Bytes: ss.Snapshot, SHA256: hex.EncodeToString(h.Sum(nil))}); err != nil {
		return ss, writeErr(err)
	}
	return ss, nil
}

// writeError is a failure to write the backup file (not the server's).
type writeError struct{ err error }

func (e *writeError) Error() string { return "write the backup: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func writeErr(err error) error { return &writeError{err} }

// WriteFile writes the backup to path through path.partial, synced to disk
// and renamed only when complete: a failed backup (a full disk) leaves no
// file that looks like a backup.
func WriteFile(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, path string, o Options) (*Summary, error) {
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backup file: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	sum, err := Write(ctx, nc, js, bw, o)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fileErr(err, path)
	}
	return sum, nil
}

// fileErr says what a full disk means.
func fileErr(err error, path string) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("backup %s: the disk is full (%w): free space or write the backup elsewhere; the partial file was removed, no backup was written", path, err)
	}
	return fmt.Errorf("backup %s: %w (no backup was written)", path, err)
}
