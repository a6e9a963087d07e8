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
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/protocol/report"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Deps are what the service needs.
type Deps struct {
	JS       jetstream.JetStream
	Streams  config.Streams // ack wait of the check stage (default: the network's)
	Network  *config.Network
	Protocol *protocol.Protocol // nil: the network's protocol file, else the HEAL adult library
	// ReportsDir is where reports are written ("" = Network.ReportsDir).
	ReportsDir string
	Logger     *slog.Logger
	// NewClient builds a site's REDCap client (nil: from the network file).
	NewClient func(site *config.Site) (Records, error)
	// Publish sends a report on relay.protocol.report.<site> (nil: on JS).
	Publish func(ctx context.Context, r *messages.ProtocolReport) error
	// RetryDelay is how long to wait before retrying a snapshot whose
	// completion data could not be fetched (transient); MaxTries bounds
	// those retries, after which the report goes out without completion.
	RetryDelay time.Duration
	MaxTries   int
}

// Records is the part of a site's REDCap client the checker uses: the form
// completion status (record ID, event and <form>_complete only).
type Records interface {
	ExportRecords(ctx context.Context, p redcap.ExportParams) ([]messages.Row, error)
}

// Run consumes snapshots until ctx ends.
func Run(ctx context.Context, deps Deps) error {
	s, err := newService(deps)
	if err != nil {
		return err
	}
	if _, err := deps.JS.Consumer(ctx, topology.Check.Stream, topology.Check.Consumer); err != nil {
		return fmt.Errorf("checker: consumer %s on stream %s: %w (is the broker provisioned?)", topology.Check.Consumer, topology.Check.Stream, err)
	}
	s.log.Info("checker started", "protocol", s.p.Name, "protocol_version", s.p.Version, "reports_dir", s.dir)
	return router.RunBatch(ctx, deps.JS, topology.Check, s.streams, router.BatchOptions{Workers: 1, Batch: 10, Logger: s.log},
		func(ctx context.Context, batch []router.Msg) {
			for _, m := range batch {
				s.handle(ctx, m)
			}
		})
}

type service struct {
	deps     Deps
	p        *protocol.Protocol
	dir      string
	log      *slog.Logger
	kit      *sitekit.Kit
	streams  config.Streams
	retry    time.Duration
	maxTries int
}

func newService(deps Deps) (*service, error) {
	if deps.JS == nil && deps.Publish == nil {
		return nil, errors.New("checker: no JetStream connection")
	}
	s := &service{deps: deps, p: deps.Protocol, dir: deps.ReportsDir, log: deps.Logger, streams: deps.Streams,
		retry: deps.RetryDelay, maxTries: deps.MaxTries}
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
	if s.streams == (config.Streams{}) {
		s.streams = config.DefaultStreams()
		if deps.Network != nil {
			s.streams = deps.Network.Streams
		}
	}
	if deps.Network != nil {
		s.kit = sitekit.New(deps.Network, s.log)
	}
	return s, nil
}

func (s *service) handle(ctx context.Context, msg router.Msg) {
	site := msg.Site()
	log := s.log.With("site", site)
	tries := msg.Attempt()
	snap, err := decode(msg.Data(), site)
	if err != nil {
		s.deadLetter(ctx, msg, site, err)
		return
	}
	log = log.With("run", snap.RunID)
	rows, cerr := s.completion(ctx, site, snap)
	if cerr != nil && redcap.IsTransient(cerr) && tries < s.maxTries {
		log.Warn("completion data not available; retrying later", "err", cerr, "attempt", tries)
		msg.Retry(s.retry)
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
		msg.Retry(s.retry)
		return
	}
	if err := s.publish(ctx, r); err != nil {
		log.Error("publish report", "err", err)
		msg.Retry(s.retry)
		return
	}
	msg.Ack()
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

func (s *service) publish(ctx context.Context, r *messages.ProtocolReport) error {
	if s.deps.Publish != nil {
		return s.deps.Publish(ctx, r)
	}
	return broker.Publish(ctx, s.deps.JS, messages.ProtocolReportSubject(r.Site), r.MsgID(), broker.Route{Site: r.Site, Run: r.RunID}, r)
}

func (s *service) client(st *config.Site) (Records, error) {
	if s.deps.NewClient != nil {
		return s.deps.NewClient(st)
	}
	c, err := s.kit.Client(st.ID)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// deadLetter keeps a snapshot the checker cannot read, with the reason.
func (s *service) deadLetter(ctx context.Context, msg router.Msg, site string, cause error) {
	payload := json.RawMessage(msg.Data())
	if !json.Valid(msg.Data()) {
		payload, _ = json.Marshal(string(msg.Data()))
	}
	msg.DeadLetter(ctx, messages.DeadLetter{Site: site, Error: cause.Error(), Payload: payload})
}
