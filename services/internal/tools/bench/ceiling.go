package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// JetStreamCeiling is raw JetStream speed for the pipeline's own per-record
// messages: async publish with dedupe IDs into a file-store stream, then a
// durable pull consumer fetching batches and acking each message.
type JetStreamCeiling struct {
	Messages    int     `json:"messages"`
	AvgBytes    int     `json:"avg_bytes"`
	PublishRate float64 `json:"publish_msgs_per_s"`
	ConsumeRate float64 `json:"consume_msgs_per_s"`
}

// SampleMessages exports up to per records of every site (through the
// simulator without latency) and builds the RECORDS_RAW messages the
// exporter would publish for them.
func (e *Env) SampleMessages(ctx context.Context, per int) ([]*nats.Msg, error) {
	var out []*nats.Msg
	for _, s := range e.Sites {
		tok, err := os.ReadFile(e.Dir + "/secrets/" + s.ID + ".token")
		if err != nil {
			return nil, err
		}
		c, err := redcap.New(redcap.Options{Site: s.ID, URL: e.RawURL, Token: strings.TrimSpace(string(tok)), CallsPerMinute: -1, Timeout: time.Hour})
		if err != nil {
			return nil, err
		}
		ids := make([]string, min(per, e.Scale.Records))
		for i := range ids {
			ids[i] = strconv.Itoa(i + 1)
		}
		rows, err := c.ExportRecords(ctx, redcap.ExportParams{Records: ids})
		if err != nil {
			return nil, err
		}
		for _, rec := range redcap.GroupRecords(rows, "record_id") {
			m := messages.RecordExported{V: messages.V, Site: s.ID, RunID: "bench", RecordID: rec.ID, Version: 1,
				Hash: messages.HashRows(rec.Rows), MetadataHash: "bench", Rows: rec.Rows, ExportedAt: time.Now().UTC()}
			msg, err := broker.NewMsg(messages.RecordsRawSubject(s.ID), m.MsgID(), broker.Route{Site: s.ID, Run: "bench", Record: rec.ID}, m)
			if err != nil {
				return nil, err
			}
			out = append(out, msg)
		}
	}
	return out, nil
}

// MeasureJetStream publishes n messages (cycling through sample, each with
// its own dedupe ID) to a fresh embedded server and consumes them again.
func MeasureJetStream(ctx context.Context, dir string, sample []*nats.Msg, n int) (JetStreamCeiling, error) {
	res := JetStreamCeiling{Messages: n}
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: dir, Port: -1})
	if err != nil {
		return res, err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := broker.JetStream(nc)
	if err != nil {
		return res, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CEILING", Subjects: []string{messages.SubjectRecordsRaw + ".*"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		return res, err
	}
	var bytes int
	start := time.Now()
	futs := make([]jetstream.PubAckFuture, 0, 4096)
	wait := func() error {
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			}
		}
		futs = futs[:0]
		return nil
	}
	for i := 0; i < n; i++ {
		src := sample[i%len(sample)]
		m := nats.NewMsg(src.Subject)
		m.Data = src.Data
		for k, v := range src.Header {
			m.Header[k] = v
		}
		m.Header.Set(jetstream.MsgIDHeader, src.Header.Get(jetstream.MsgIDHeader)+"."+strconv.Itoa(i))
		bytes += len(m.Data)
		f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second))
		if err != nil {
			return res, err
		}
		futs = append(futs, f)
		if len(futs) == cap(futs) {
			if err := wait(); err != nil {
				return res, err
			}
		}
	}
	if err := wait(); err != nil {
		return res, err
	}
	res.PublishRate = float64(n) / time.Since(start).Seconds()
	res.AvgBytes = bytes / max(n, 1)

	cons, err := js.CreateOrUpdateConsumer(ctx, "CEILING", jetstream.ConsumerConfig{Durable: "ceiling", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000})
	if err != nil {
		return res, err
	}
	start = time.Now()
	for got := 0; got < n; {
		batch, err := cons.Fetch(min(1000, n-got), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return res, err
		}
		k := 0
		for m := range batch.Messages() {
			_ = m.Ack()
			k++
		}
		if k == 0 {
			return res, fmt.Errorf("consumer stalled after %d of %d messages", got, n)
		}
		got += k
	}
	res.ConsumeRate = float64(n) / time.Since(start).Seconds()
	return res, nil
}
