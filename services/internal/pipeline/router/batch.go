package router

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// BatchOptions tune a pull-consuming service.
type BatchOptions struct {
	// Workers fetch and handle batches independently (the importer's
	// destination concurrency).
	Workers int
	// Batch is the most deliveries one handling gets; Size, when set,
	// says it anew before each fetch (the importer's adaptive batches).
	Batch int
	Size  func() int
	// MaxBytes stops filling a batch once its bodies reach this many bytes
	// (0 = no limit): a request size limit of the service's server.
	MaxBytes int
	// Linger is how long a partly filled batch waits once for more.
	Linger time.Duration
	Logger *slog.Logger
}

// Msg is one delivery of a pulled batch, as a batch handler sees it: the
// body and routing, and the three ways to settle it. *Delivery is the real
// one; services' unit tests use in-memory fakes.
type Msg interface {
	Data() []byte
	Site() string
	Run() string
	Attempt() int
	// Ack settles the delivery as done.
	Ack()
	// Retry hands it back for another try after a delay (transient
	// failures are never dead-lettered).
	Retry(delay time.Duration)
	// DeadLetter stores it in the dead-letter stream with the reason, then
	// acks it.
	DeadLetter(ctx context.Context, dl messages.DeadLetter)
}

// BatchHandler handles one fetched batch. It must settle every delivery
// before it returns; an unsettled one is redelivered after the stage's ack
// wait.
type BatchHandler func(ctx context.Context, batch []Msg)

// RunBatch pulls from the stage's durable and runs the handler until ctx
// ends. While a batch is being handled, every delivery in it is marked in
// progress every third of the ack wait, so a slow or down destination never
// makes JetStream hand the batch to another worker.
func RunBatch(ctx context.Context, js jetstream.JetStream, st topology.Stage, streams config.Streams, o BatchOptions, h BatchHandler) error {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Batch < 1 {
		o.Batch = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	beat := st.AckWait(streams) / 3
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pullLoop(ctx, js, st, o, beat, h)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func pullLoop(ctx context.Context, js jetstream.JetStream, st topology.Stage, o BatchOptions, beat time.Duration, h BatchHandler) {
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		if cons == nil {
			c, err := js.Consumer(ctx, st.Stream, st.Consumer)
			if err != nil {
				// Deleted by a replay reset, or NATS is restarting.
				if ctx.Err() == nil {
					o.Logger.Debug("consumer not available yet", "stage", st.Name, "consumer", st.Consumer, "err", err)
				}
				sleep(ctx, time.Second)
				continue
			}
			cons = c
		}
		msgs, err := fetch(ctx, cons, o)
		if err != nil {
			cons = nil
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		ds := make([]*Delivery, len(msgs))
		batch := make([]Msg, len(msgs))
		for i, m := range msgs {
			ds[i] = &Delivery{msg: m, stage: st, js: js, log: o.Logger}
			batch[i] = ds[i]
		}
		stop := broker.Heartbeat(beat, func() {
			for _, d := range ds {
				d.inProgress()
			}
		})
		h(ctx, batch)
		stop()
	}
}

// fetch waits (up to a second) for the first message only, then takes what
// is already waiting, up to a batch: a batch-sized fetch would hold a
// trickle of records (an incremental run, the end of a sync) until the
// batch filled or the wait expired. A partly filled batch lingers once, so
// a steady flow still makes full batches (few API calls). With several
// workers a batch is at most a fair share of the backlog, so that every
// worker has a call to make while there is one; and it stops at MaxBytes.
func fetch(ctx context.Context, cons jetstream.Consumer, o BatchOptions) ([]jetstream.Msg, error) {
	msgs, err := collect(cons.Fetch(1, jetstream.FetchMaxWait(time.Second)))
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	target := o.Batch
	if o.Size != nil {
		target = max(1, o.Size())
	}
	if md, err := msgs[0].Metadata(); err == nil && o.Workers > 1 {
		share := (md.NumPending + 1 + uint64(o.Workers) - 1) / uint64(o.Workers)
		target = min(target, int(max(share, 1)))
	}
	bytes := len(msgs[0].Data())
	for lingered := false; len(msgs) < target && ctx.Err() == nil; {
		want := target - len(msgs)
		if o.MaxBytes > 0 {
			if bytes >= o.MaxBytes {
				break
			}
			// Ask for what fits at the batch's average size so far.
			avg := max(bytes/len(msgs), 1)
			want = min(want, max((o.MaxBytes-bytes)/avg, 1))
		}
		more, err := collect(cons.FetchNoWait(want))
		msgs = append(msgs, more...)
		for _, m := range more {
			bytes += len(m.Data())
		}
		if err != nil {
			// Keep what we have; the next fetch finds out what is wrong.
			break
		}
		if len(msgs) < target && len(more) == 0 {
			if lingered || o.Linger <= 0 {
				break
			}
			lingered = true
			sleep(ctx, o.Linger)
		}
	}
	return msgs, nil
}

// collect drains one fetch. An error is returned only when nothing came and
// the consumer is gone (a replay reset, NATS restarting), so the caller
// looks it up again.
func collect(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && len(msgs) == 0 &&
		(errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound)) {
		return nil, err
	}
	return msgs, nil
}

// Delivery is one message of a pulled batch.
type Delivery struct {
	msg   jetstream.Msg
	stage topology.Stage
	js    jetstream.JetStream
	log   *slog.Logger

	mu      sync.Mutex
	settled bool
}

// Data is the message body.
func (d *Delivery) Data() []byte { return d.msg.Data() }

// Site is the site the message belongs to (its subject's last token).
func (d *Delivery) Site() string {
	if s := d.msg.Headers().Get(messages.HeaderSite); s != "" {
		return s
	}
	return messages.SiteFromSubject(d.msg.Subject())
}

// Run is the run the message belongs to, from its headers.
func (d *Delivery) Run() string { return d.msg.Headers().Get(messages.HeaderRun) }

// Attempt is how many times the message has been delivered, this time included.
func (d *Delivery) Attempt() int {
	if md, err := d.msg.Metadata(); err == nil && md.NumDelivered > 0 {
		return int(md.NumDelivered)
	}
	return 1
}

// Ack settles the delivery as done.
func (d *Delivery) Ack() {
	if d.settle() {
		_ = d.msg.Ack()
	}
}

// Retry hands the delivery back for another try after delay (transient
// failures: never dead-lettered).
func (d *Delivery) Retry(delay time.Duration) {
	if d.settle() {
		_ = d.msg.NakWithDelay(delay)
	}
}

// DeadLetter stores the delivery in the dead-letter stream with the reason
// and acks it. It keeps trying to store the letter until ctx ends (then the
// message is redelivered: nothing is lost); the payload is kept when it is
// JSON.
func (d *Delivery) DeadLetter(ctx context.Context, dl messages.DeadLetter) {
	dl.Stage = d.stage.Name
	if dl.Site == "" {
		dl.Site = d.Site()
	}
	if dl.RunID == "" {
		dl.RunID = d.Run()
	}
	if dl.RecordID == "" {
		dl.RecordID = d.msg.Headers().Get(messages.HeaderRecord)
	}
	dl.Attempts = d.Attempt()
	dl.Subject = d.msg.Subject()
	dl.MsgID = d.msg.Headers().Get(jetstream.MsgIDHeader)
	if dl.Payload == nil && json.Valid(d.msg.Data()) {
		dl.Payload = d.msg.Data()
	}
	for ctx.Err() == nil {
		err := DeadLetter(ctx, d.js, d.log, dl)
		if err == nil {
			d.Ack()
			return
		}
		d.log.Warn("dead letter not stored yet; retrying", "stage", dl.Stage, "site", dl.Site, "err", err)
		sleep(ctx, time.Second)
	}
}

// Settled reports whether Ack, Retry or DeadLetter was called.
func (d *Delivery) Settled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settled
}

func (d *Delivery) settle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return false
	}
	d.settled = true
	return true
}

func (d *Delivery) inProgress() {
	if !d.Settled() {
		_ = d.msg.InProgress()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
