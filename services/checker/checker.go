// Package checker is the protocol-check service: for every metadata snapshot
// the exporter publishes (stream METADATA, durable pull consumer "checker")
// it fetches the site's form completion status (record ID, event and
// <form>_complete only: no PHI), checks the site against the protocol,
// writes <site>.json, <site>.csv and index.html into the reports folder, and
// publishes the report on relay.protocol.report.<site>. A snapshot it cannot
// read is dead-lettered on relay.dlq.check.<site>.
package checker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/protocol/report"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Consumer is the durable pull consumer on METADATA (created by the broker's
// provisioning).
const Consumer = "checker"

// Deps are what the service needs.
type Deps struct {
	JS       jetstream.JetStream
	Network  *config.Network
	Protocol *protocol.Protocol // nil: the network's protocol file, else the HEAL adult library
	// ReportsDir is where reports are written ("" = Network.ReportsDir).
	ReportsDir string
	Logger     *slog.Logger
	// NewClient builds a site's REDCap client (nil: from the network file).
	NewClient func(site *config.Site) (*redcap.Client, error)
	// RetryDelay is how long to wait before retrying a snapshot whose
	// completion data could not be fetched (transient); MaxTries bounds
	// those retries, after which the report goes out without completion.
	RetryDelay time.Duration
	MaxTries   int
	// FetchWait is the longest a pull waits for new snapshots.
	FetchWait time.Duration
}

// Run consumes snapshots until ctx ends.
func Run(ctx context.Context, deps Deps) error {
	s, err := newService(deps)
	if err != nil {
		return err
	}
	cons, err := deps.JS.Consumer(ctx, messages.StreamMetadata, Consumer)
	if err != nil {
		return fmt.Errorf("checker: consumer %s on stream %s: %w (is the broker provisioned?)", Consumer, messages.StreamMetadata, err)
	}
	s.log.Info("checker started", "protocol", s.p.Name, "protocol_version", s.p.Version, "reports_dir", s.dir)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(s.fetchWait))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Warn("fetch snapshots", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for msg := range batch.Messages() {
			s.handle(ctx, msg)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
			s.log.Warn("fetch snapshots", "err", err)
		}
	}
	return nil
}

type service struct {
	deps      Deps
	p         *protocol.Protocol
	dir       string
	log       *slog.Logger
	retry     time.Duration
	maxTries  int
	fetchWait time.Duration
}

func newService(deps Deps) (*service, error) {
	if deps.JS == nil {
		return nil, errors.New("checker: no JetStream connection")
	}
	s := &service{deps: deps, p: deps.Protocol, dir: deps.ReportsDir, log: deps.Logger,
		retry: deps.RetryDelay, maxTries: deps.MaxTries, fetchWait: deps.FetchWait}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("service", "checker")
	if s.dir == "" && deps.Network != nil {
		s.dir = deps.Network.ReportsDir
	}
	if s.dir == "" {
		return nil, errors.New("checker: no reports folder: set reports_dir in the network file")
	}
	if s.p == nil {
		var err error
		if deps.Network != nil && deps.Network.Protocol != "" {
			s.p, err = protocol.Load(deps.Network.Protocol)
		} else {
			s.p, err = protocol.HEALAdult()
		}
		if err != nil {
			return nil, fmt.Errorf("checker: %w", err)
		}
	}
	if err := s.p.Err(); err != nil {
		s.log.Warn("protocol has broken entries; they are reported per site", "problems", len(s.p.Problems))
	}
	if s.retry <= 0 {
		s.retry = 30 * time.Second
	}
	if s.maxTries <= 0 {
		s.maxTries = 5
	}
	if s.fetchWait <= 0 {
		s.fetchWait = 5 * time.Second
	}
	return s, nil
}

func (s *service) handle(ctx context.Context, msg jetstream.Msg) {
	site := messages.SiteFromSubject(msg.Subject())
	log := s.log.With("site", site)
	md, _ := msg.Metadata()
	tries := 1
	if md != nil {
		tries = int(md.NumDelivered)
	}
	snap, err := decode(msg.Data(), site)
	if err != nil {
		s.deadLetter(ctx, log, msg, site, tries, err)
		return
	}
	log = log.With("run", snap.RunID)
	rows, cerr := s.completion(ctx, site, snap)
	if cerr != nil && redcap.IsTransient(cerr) && tries < s.maxTries {
		log.Warn("completion data not available; retrying later", "err", cerr, "attempt", tries)
		_ = msg.NakWithDelay(s.retry)
		return
	}
	r := protocol.Check(s.p, site, snap, rows)
	if st, ok := s.site(site); ok {
		r.SiteName = st.Name
	}
	if cerr != nil {
		r.Findings = append(r.Findings, messages.ProtocolFinding{Severity: messages.SeverityInfo, Kind: "completion_unavailable",
			Message: "completion could not be measured: " + cerr.Error()})
		r.Infos++
	}
	if err := report.WriteWith(s.dir, report.Options{Location: NetworkLocation(s.deps.Network)}, r); err != nil {
		log.Error("write reports", "err", err)
		_ = msg.NakWithDelay(s.retry)
		return
	}
	if err := broker.Publish(ctx, s.deps.JS, messages.ProtocolReportSubject(site), r.MsgID(),
		broker.Route{Site: site, Run: snap.RunID}, r); err != nil {
		log.Error("publish report", "err", err)
		_ = msg.NakWithDelay(s.retry)
		return
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack snapshot", "err", err)
	}
	score := -1.0
	if r.Score != nil {
		score = *r.Score
	}
	log.Info("site checked", "status", r.Status, "score", score, "errors", r.Errors, "warnings", r.Warnings)
}

func decode(b []byte, site string) (*messages.MetadataSnapshot, error) {
	var snap messages.MetadataSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("site %s: metadata snapshot is not valid JSON: %v", site, err)
	}
	if snap.V != messages.V {
		return nil, fmt.Errorf("site %s: metadata snapshot has contract version %d, this checker reads %d", site, snap.V, messages.V)
	}
	if snap.Site != "" && snap.Site != site {
		return nil, fmt.Errorf("metadata snapshot for site %s arrived on the subject of site %s", snap.Site, site)
	}
	if len(snap.Fields) == 0 {
		return nil, fmt.Errorf("site %s: metadata snapshot has no data dictionary", site)
	}
	return &snap, nil
}

func (s *service) site(id string) (*config.Site, bool) {
	if s.deps.Network == nil {
		return nil, false
	}
	return s.deps.Network.Site(id)
}

// completion exports only the record ID and the <form>_complete fields of
// the forms that implement protocol instruments.
func (s *service) completion(ctx context.Context, site string, snap *messages.MetadataSnapshot) ([]messages.Row, error) {
	st, ok := s.site(site)
	if !ok {
		return nil, fmt.Errorf("site %s is not in the network file, so its data cannot be read", site)
	}
	fields := protocol.StatusFields(s.p, snap)
	if len(fields) < 2 {
		return nil, nil // no protocol form at the site: nothing to measure
	}
	c, err := s.client(st)
	if err != nil {
		return nil, err
	}
	return c.ExportRecords(ctx, redcap.ExportParams{Fields: fields, ExportBlankForGrayFormStatus: true})
}

func (s *service) client(st *config.Site) (*redcap.Client, error) {
	if s.deps.NewClient != nil {
		return s.deps.NewClient(st)
	}
	return SiteClient(st, s.log)
}

// SiteClient builds a REDCap client from a site's network entry.
func SiteClient(st *config.Site, log *slog.Logger) (*redcap.Client, error) {
	tok, err := st.Token.Read()
	if err != nil {
		return nil, fmt.Errorf("site %s: token: %w", st.ID, err)
	}
	return redcap.New(redcap.Options{Site: st.ID, URL: st.URL, Token: tok, CAFile: st.CAFile,
		CallsPerMinute: st.CallsPerMinute, Timeout: st.Timeout.D(), Logger: log})
}

func (s *service) deadLetter(ctx context.Context, log *slog.Logger, msg jetstream.Msg, site string, tries int, cause error) {
	payload := json.RawMessage(msg.Data())
	if !json.Valid(msg.Data()) {
		payload, _ = json.Marshal(string(msg.Data()))
	}
	dl := messages.DeadLetter{V: messages.V, Stage: messages.StageCheck, Site: site, Error: cause.Error(), Attempts: tries,
		Subject: msg.Subject(), MsgID: msg.Headers().Get(jetstream.MsgIDHeader), Payload: payload, At: time.Now().UTC()}
	if h := msg.Headers(); h != nil {
		dl.RunID = h.Get(messages.HeaderRun)
	}
	id := "dlq.check." + site + "." + messages.HashJSON(string(msg.Data()))[:16]
	if err := broker.Publish(ctx, s.deps.JS, messages.DLQSubject(messages.StageCheck, site), id, broker.Route{Site: site, Run: dl.RunID}, dl); err != nil {
		log.Error("dead-letter snapshot", "err", err)
		_ = msg.NakWithDelay(s.retry)
		return
	}
	log.Warn("snapshot dead-lettered", "err", cause)
	_ = msg.Ack()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
