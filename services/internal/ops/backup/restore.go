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
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// RestoreOptions for RestoreFile.
type RestoreOptions struct {
	// Key is the key the backup was encrypted with (nil for a plain one).
	Key []byte
	// Replace deletes the pipeline's streams that exist before restoring,
	// when no service uses them (a store that `relay provision` or a
	// service start created empty). Without it, existing streams are refused.
	Replace bool
}

// Inspect reads the whole backup file and checks it (format, key, every
// frame's integrity, each stream's checksum, completeness) without
// touching any server: what RestoreFile does first.
func Inspect(path string, key []byte) (*Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return walk(bufio.NewReaderSize(f, 1<<20), key, nil)
}

// streamSink receives a stream as walk reads it: its start, each chunk,
// then its end (the checksum already verified).
type streamSink interface {
	begin(ctx context.Context, s streamStart) error
	chunk(ctx context.Context, data []byte) error
	end(ctx context.Context) error
}

// walk reads a backup frame by frame, verifying it, and feeds a sink (nil:
// verify only).
func walk(r io.Reader, key []byte, sink streamSink) (*Summary, error) {
	ctx := context.Background()
	fr, err := readAbout(r)
	if err != nil {
		return nil, err
	}
	if err := fr.unlock(key); err != nil {
		return nil, err
	}
	a := fr.About
	sum := &Summary{Encrypted: a.Encrypted, KeyID: a.KeyID, Created: a.Created, Relay: a.Relay}
	var h header
	if err := fr.json(frameHeader, &h); err != nil {
		return nil, err
	}
	sum.Busy = h.Busy
	for _, name := range h.Streams {
		ss, err := walkStream(ctx, fr, name, sink)
		if err != nil {
			return nil, err
		}
		sum.Streams = append(sum.Streams, ss)
	}
	var fin final
	if err := fr.json(frameFinal, &fin); err != nil {
		return nil, err
	}
	if fin.Streams != len(h.Streams) {
		return nil, fmt.Errorf("the backup is damaged: it ends after %d streams of %d", fin.Streams, len(h.Streams))
	}
	return sum, nil
}

func walkStream(ctx context.Context, fr *frameReader, name string, sink streamSink) (StreamSummary, error) {
	ss := StreamSummary{Name: name}
	var start streamStart
	if err := fr.json(frameStream, &start); err != nil {
		return ss, err
	}
	if start.Name != name {
		return ss, fmt.Errorf("the backup is damaged: stream %s where %s was expected", start.Name, name)
	}
	ss.count(start.State)
	if sink != nil {
		if err := sink.begin(ctx, start); err != nil {
			return ss, err
		}
	}
	h := sha256.New()
	for {
		kind, payload, err := fr.next()
		if err != nil {
			return ss, err
		}
		if kind == frameEnd {
			var end streamEnd
			if err := json.Unmarshal(payload, &end); err != nil {
				return ss, fmt.Errorf("the backup is damaged at the end of stream %s: %v", name, err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != end.SHA256 || end.Bytes != ss.Snapshot {
				return ss, fmt.Errorf("the backup is damaged: stream %s's snapshot does not match its checksum", name)
			}
			break
		}
		if kind != frameData {
			return ss, fmt.Errorf("the backup is damaged at frame %d: a %q frame inside stream %s", fr.n-1, kind, name)
		}
		h.Write(payload)
		ss.Snapshot += int64(len(payload))
		if sink != nil {
			if err := sink.chunk(ctx, payload); err != nil {
				return ss, err
			}
		}
	}
	if sink != nil {
		if err := sink.end(ctx); err != nil {
			return ss, err
		}
	}
	return ss, nil
}

// RestoreFile restores a backup into a NATS server whose pipeline streams
// do not exist (a wiped store), with the admin user. It checks the whole
// file first, refuses streams that exist (or, with Replace, streams a
// running service uses), and restores every stream or none: when one fails
// (a full disk, the server's store limit), those it restored are removed
// again. Run `relay provision` afterwards (the command does).
func RestoreFile(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, path string, o RestoreOptions) (*Summary, error) {
	sum, err := Inspect(path, o.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (nothing was restored)", path, err)
	}
	if err := clearTheWay(ctx, js, sum, o.Replace); err != nil {
		return nil, err
	}
	if err := checkSpace(ctx, js, sum); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rs := &restorer{nc: nc}
	if _, err := walk(bufio.NewReaderSize(f, 1<<20), o.Key, rs); err != nil {
		return nil, rs.rollback(ctx, js, err)
	}
	return sum, nil
}

// clearTheWay refuses a restore over streams that exist: over a running
// stack always, over an idle one unless replace (then they are deleted).
func clearTheWay(ctx context.Context, js jetstream.JetStream, sum *Summary, replace bool) error {
	var present, inUse []string
	for _, ss := range sum.Streams {
		st, err := js.Stream(ctx, ss.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("restore: stream %s: %w", ss.Name, err)
		}
		info := st.CachedInfo()
		present = append(present, fmt.Sprintf("%s (%d messages)", ss.Name, info.State.Msgs))
		if users := consumersInUse(ctx, st); len(users) > 0 {
			inUse = append(inUse, fmt.Sprintf("%s (read by %s)", ss.Name, strings.Join(users, ", ")))
		}
	}
	switch {
	case len(inUse) > 0:
		return fmt.Errorf("restore refused: the pipeline is running: %s; stop every service first (docker-compose stop ticker exporter transformer importer checker), nothing was restored", strings.Join(inUse, "; "))
	case len(present) > 0 && !replace:
		return fmt.Errorf("restore refused: these streams exist: %s; restore into an empty store (a new nats-data volume), or pass --replace to delete them first; nothing was restored", strings.Join(present, ", "))
	}
	for _, ss := range sum.Streams {
		if err := js.DeleteStream(ctx, ss.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("restore --replace: delete stream %s: %w", ss.Name, err)
		}
	}
	return nil
}

// consumersInUse names the consumers a running process reads through: a
// push consumer with a subscriber, a pull consumer with waiting requests.
func consumersInUse(ctx context.Context, st jetstream.Stream) []string {
	var out []string
	l := st.ListConsumers(ctx)
	for c := range l.Info() {
		if c.PushBound || c.NumWaiting > 0 {
			name := c.Name
			if c.Config.Durable == "" {
				name = "a watcher"
			}
			out = append(out, name)
		}
	}
	return out
}

// checkSpace refuses a backup larger than the account may still store.
// (The server's own max_file_store is not visible to a client: a restore
// that reaches it fails and is rolled back.)
func checkSpace(ctx context.Context, js jetstream.JetStream, sum *Summary) error {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var need uint64
	for _, ss := range sum.Streams {
		need += ss.Bytes
	}
	if max := info.Limits.MaxStore; max > 0 && info.Store+need > uint64(max) {
		return fmt.Errorf("restore refused: the backup holds %s, the account may store %s more (its limit %s): nothing was restored",
			config.Bytes(need).Human(), config.Bytes(uint64(max)-min(info.Store, uint64(max))).Human(), config.Bytes(max).Human())
	}
	return nil
}

// restorer sends each stream to the server's restore API as walk reads it.
type restorer struct {
	nc       *nats.Conn
	deliver  string
	current  string
	restored []string
}

const chunkTimeout = 30 * time.Second

func (r *restorer) begin(ctx context.Context, s streamStart) error {
	req, _ := json.Marshal(map[string]json.RawMessage{"config": s.Config, "state": s.State})
	msg, err := r.nc.RequestWithContext(ctx, "$JS.API.STREAM.RESTORE."+s.Name, req)
	if err != nil {
		return fmt.Errorf("restore stream %s: %w", s.Name, err)
	}
	var resp struct {
		Error   *apiError `json:"error"`
		Deliver string    `json:"deliver_subject"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("restore stream %s: %w", s.Name, err)
	}
	r.current = s.Name
	if resp.Error != nil {
		return r.failed(resp.Error)
	}
	r.deliver = resp.Deliver
	return nil
}

func (r *restorer) chunk(ctx context.Context, data []byte) error {
	cctx, cancel := context.WithTimeout(ctx, chunkTimeout)
	defer cancel()
	msg, err := r.nc.RequestWithContext(cctx, r.deliver, data)
	if err != nil {
		return fmt.Errorf("restore stream %s: %w", r.current, err)
	}
	return r.answer(msg)
}

func (r *restorer) end(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	msg, err := r.nc.RequestWithContext(cctx, r.deliver, nil)
	if err != nil {
		return fmt.Errorf("restore stream %s: %w", r.current, err)
	}
	if err := r.answer(msg); err != nil {
		return err
	}
	r.restored = append(r.restored, r.current)
	return nil
}

// answer reads the server's reply to a chunk (empty: stored) or to the
// end (the stream's info or an error).
func (r *restorer) answer(msg *nats.Msg) error {
	if len(msg.Data) == 0 {
		return nil
	}
	var resp struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("restore stream %s: %w", r.current, err)
	}
	if resp.Error != nil {
		return r.failed(resp.Error)
	}
	return nil
}

// failed explains the server's refusal; a full store says what to raise.
func (r *restorer) failed(e *apiError) error {
	err := fmt.Errorf("restore stream %s: %w", r.current, e)
	if broker.IsStorageFull(&jetstream.APIError{ErrorCode: jetstream.ErrorCode(e.ErrCode)}) {
		err = fmt.Errorf("%w: the NATS server may not store that much (raise its max_file_store: it must hold the sum of streams.max_bytes) or its disk is full", err)
	}
	return err
}

// rollback removes what a failed restore created, so the store is as it
// was before: never half restored.
func (r *restorer) rollback(ctx context.Context, js jetstream.JetStream, cause error) error {
	gone := append([]string(nil), r.restored...)
	if r.current != "" && (len(r.restored) == 0 || r.restored[len(r.restored)-1] != r.current) {
		gone = append(gone, r.current) // the one that failed, if the server kept a part
	}
	var left []string
	for _, name := range gone {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			left = append(left, name)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("%w; rolling back FAILED for %s: delete them before trying again", cause, strings.Join(left, ", "))
	}
	return fmt.Errorf("%w; the %d stream(s) restored before it were removed again: nothing is restored", cause, len(r.restored))
}
