// Package topology is the pipeline's shape in one table: every stream (what
// it holds, who publishes into it, how long it keeps it), every stage (the
// stream it reads, its durable consumer, ack wait, dead-letter subject, the
// service that reads it) and every bucket. Provisioning (broker), the
// services' consumers (router), the operator's tools (ops) and the NATS
// permission tests all read it, so adding a stage or tuning a timing is an
// edit here and in the network file's defaults (config), nowhere else.
package topology

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
)

// Service names: the processes of the pipeline, and their NATS users.
const (
	Ticker      = "ticker"
	Exporter    = "exporter"
	Transformer = "transformer"
	Importer    = "importer"
	Checker     = "checker"
	// Verifier compares sites with the destination on the sites'
	// verify_every (the scheduled `relay verify`).
	Verifier = "verifier"
)

// Services lists every service in pipeline order.
var Services = []string{Ticker, Exporter, Transformer, Importer, Checker, Verifier}

// Stage is one hop: a service reading a stream through its durable consumer.
type Stage struct {
	Name   string // messages.Stage*: used in dead-letter subjects and status
	Reader string // the service that consumes
	Stream string
	Filter string // the consumer's filter subject
	// Consumer is the durable's name and, for push consumers, the queue
	// group: replicas of Reader split the work.
	Consumer string
	// Push consumers deliver to DeliverSubject for watermill's per-message
	// handlers; pull consumers are fetched in batches.
	Push          bool
	MaxAckPending int
	MaxWaiting    int // pull only
	ackWait       func(config.Streams) time.Duration
}

// The stages in pipeline order.
var (
	Export = Stage{
		Name: messages.StageExport, Reader: Exporter, Stream: messages.StreamExportRequests,
		Filter: messages.SubjectExportRequested + ".*", Consumer: "exporter", Push: true,
		MaxAckPending: 16, // sites exported at once
		ackWait:       func(s config.Streams) time.Duration { return s.ExportAckWait.D() },
	}
	Transform = Stage{
		Name: messages.StageTransform, Reader: Transformer, Stream: messages.StreamRecordsRaw,
		Filter: messages.SubjectRecordsRaw + ".*", Consumer: "transformer", Push: true,
		MaxAckPending: 2048,
		ackWait:       func(s config.Streams) time.Duration { return s.TransformAckWait.D() },
	}
	Import = Stage{
		Name: messages.StageImport, Reader: Importer, Stream: messages.StreamRecordsClean,
		Filter: messages.SubjectRecordsClean + ".*", Consumer: "importer",
		MaxAckPending: 20000, MaxWaiting: 64,
		ackWait: func(s config.Streams) time.Duration { return s.ImportAckWait.D() },
	}
	Check = Stage{
		Name: messages.StageCheck, Reader: Checker, Stream: messages.StreamMetadata,
		Filter: messages.SubjectMetadata + ".*", Consumer: "checker",
		ackWait: func(s config.Streams) time.Duration { return s.CheckAckWait.D() },
	}
	// Verify runs one site's verification at a time: it exports the whole
	// site, so more at once would only compete for the sites' rate limits.
	Verify = Stage{
		Name: messages.StageVerify, Reader: Verifier, Stream: messages.StreamExportRequests,
		Filter: messages.SubjectVerifyRequested + ".*", Consumer: "verifier", Push: true,
		MaxAckPending: 1,
		ackWait:       func(s config.Streams) time.Duration { return s.ExportAckWait.D() },
	}
)

// Stages lists every stage in pipeline order.
var Stages = []Stage{Export, Transform, Import, Check, Verify}

// StageNamed returns the stage with the given name.
func StageNamed(name string) (Stage, bool) {
	for _, s := range Stages {
		if s.Name == name {
			return s, true
		}
	}
	return Stage{}, false
}

// StageNames lists the stage names, for messages that name the valid ones.
func StageNames() []string {
	out := make([]string, len(Stages))
	for i, s := range Stages {
		out[i] = s.Name
	}
	return out
}

// AckWait is how long a delivery may stay unacknowledged before JetStream
// hands it to another replica.
func (s Stage) AckWait(c config.Streams) time.Duration { return s.ackWait(c) }

// DeliverSubject is where a push consumer delivers.
func (s Stage) DeliverSubject() string { return "relay.deliver." + s.Consumer }

// DeadLetterSubject is where the stage's failures for a site go.
func (s Stage) DeadLetterSubject(site string) string { return messages.DLQSubject(s.Name, site) }

// ConsumerConfig is the durable consumer as provisioned.
func (s Stage) ConsumerConfig(c config.Streams) jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       s.Consumer,
		FilterSubject: s.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait(c),
		// Never give up on a delivery: transient failures (an outage, a
		// broker restart) are retried until they succeed; permanent ones
		// are dead-lettered by the stage itself, with the reason.
		MaxDeliver:    -1,
		MaxAckPending: s.MaxAckPending,
	}
	if s.Push {
		cc.DeliverSubject, cc.DeliverGroup = s.DeliverSubject(), s.Consumer
	} else {
		cc.MaxWaiting = s.MaxWaiting
	}
	return cc
}

// StreamSpec is one stream: what it holds and who may publish into it.
type StreamSpec struct {
	Name       string
	Subjects   []string
	Holds      string
	Publishers []string // services allowed to publish (the NATS permission tests hold deploy/nats/nats.conf to it)
	config     func(config.Streams) jetstream.StreamConfig
}

// Config is the stream as provisioned.
func (s StreamSpec) Config(c config.Streams) jetstream.StreamConfig {
	sc := s.config(c)
	sc.Name, sc.Subjects, sc.Description = s.Name, s.Subjects, s.Holds
	sc.Retention, sc.Storage, sc.Replicas = jetstream.LimitsPolicy, jetstream.FileStorage, c.Replicas
	// Every stream has a byte cap (streams.max_bytes), so a full one is
	// refused or trimmed by its discard policy long before the disk is full.
	sc.MaxBytes = c.MaxBytesOf(s.Name)
	if sc.Duplicates == 0 {
		sc.Duplicates = min(c.DedupeWindow.D(), sc.MaxAge)
	}
	return sc
}

const year = 365 * 24 * time.Hour

// Streams is every stream of the pipeline.
var Streams = []StreamSpec{
	{Name: messages.StreamExportRequests, Subjects: []string{messages.SubjectExportRequested + ".*", messages.SubjectVerifyRequested + ".*"},
		Holds: "one export request per site and tick, and the scheduled verifications", Publishers: []string{Ticker, Verifier},
		config: func(config.Streams) jetstream.StreamConfig {
			return jetstream.StreamConfig{MaxAge: 7 * 24 * time.Hour, Discard: jetstream.DiscardOld}
		}},
	{Name: messages.StreamRecordsRaw, Subjects: []string{messages.SubjectRecordsRaw + ".*"},
		Holds: "exported site records; holds PHI for approved fields only", Publishers: []string{Exporter},
		config: func(c config.Streams) jetstream.StreamConfig {
			// A full stream must push back on the exporter, never drop
			// records not yet transformed.
			return jetstream.StreamConfig{MaxAge: c.RawMaxAge.D(), Discard: jetstream.DiscardNew}
		}},
	{Name: messages.StreamMetadata, Subjects: []string{messages.SubjectMetadata + ".*"},
		Holds: "metadata snapshots per site run", Publishers: []string{Exporter},
		config: func(c config.Streams) jetstream.StreamConfig {
			return jetstream.StreamConfig{MaxAge: year, Discard: jetstream.DiscardOld, MaxMsgsPerSubject: c.MetadataPerSite}
		}},
	{Name: messages.StreamRecordsClean, Subjects: []string{messages.SubjectRecordsClean + ".*"},
		Holds: "de-identified records ready for import; the replay window", Publishers: []string{Transformer},
		config: func(c config.Streams) jetstream.StreamConfig {
			return jetstream.StreamConfig{MaxAge: c.CleanMaxAge.D(), Discard: jetstream.DiscardNew}
		}},
	{Name: messages.StreamAudit, Subjects: []string{messages.SubjectImportDone + ".*", messages.SubjectRun + ".*", messages.SubjectDeletions + ".*", messages.SubjectVerify + ".*"},
		Holds:      "what was imported (IDs, field names, policy version), the runs' lifecycle and the operators' decisions on deletions; never values",
		Publishers: []string{Importer, Exporter, Verifier},
		config: func(c config.Streams) jetstream.StreamConfig {
			return jetstream.StreamConfig{MaxAge: c.AuditMaxAge.D(), Discard: jetstream.DiscardOld}
		}},
	{Name: messages.StreamDLQ, Subjects: []string{messages.SubjectDLQ + ".>"},
		Holds: "dead letters: the failed message, the stage, the reason", Publishers: []string{Exporter, Transformer, Importer, Checker, Verifier},
		config: func(c config.Streams) jetstream.StreamConfig {
			return jetstream.StreamConfig{MaxAge: c.DLQMaxAge.D(), Discard: jetstream.DiscardOld}
		}},
	{Name: messages.StreamReports, Subjects: []string{messages.SubjectProtocolReport + ".*"},
		Holds: "protocol check reports per site", Publishers: []string{Checker},
		config: func(config.Streams) jetstream.StreamConfig {
			return jetstream.StreamConfig{MaxAge: year, Discard: jetstream.DiscardOld, MaxMsgsPerSubject: 20}
		}},
}

// Bucket is a KV bucket or object store of per-site state.
type Bucket struct {
	Name    string
	Object  bool     // an object store (large values), else a KV bucket
	Holds   string   // what is in it
	Writers []string // services that write it
	Readers []string // services that only read it
	config  func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig)
}

// KeyValue is the KV bucket as provisioned (Object false).
func (b Bucket) KeyValue(c config.Streams) jetstream.KeyValueConfig {
	kv, _ := b.config(c)
	kv.Bucket, kv.Description, kv.Storage, kv.Replicas = b.Name, b.Holds, jetstream.FileStorage, c.Replicas
	kv.MaxBytes = c.MaxBytesOf(b.StreamName())
	return kv
}

// ObjectStore is the object store as provisioned (Object true).
func (b Bucket) ObjectStore(c config.Streams) jetstream.ObjectStoreConfig {
	_, obs := b.config(c)
	obs.Bucket, obs.Description, obs.Storage, obs.Replicas = b.Name, b.Holds, jetstream.FileStorage, c.Replicas
	obs.MaxBytes = c.MaxBytesOf(b.StreamName())
	return obs
}

// StreamName is the JetStream stream that holds the bucket (KV_<name> or
// OBJ_<name>): what backups, metrics and the NATS tools name.
func (b Bucket) StreamName() string {
	if b.Object {
		return config.ObjPrefix + b.Name
	}
	return config.KVPrefix + b.Name
}

// StreamNames lists every stream the pipeline keeps, buckets included, in
// pipeline order.
func StreamNames() []string {
	var out []string
	for _, s := range Streams {
		out = append(out, s.Name)
	}
	for _, b := range Buckets {
		out = append(out, b.StreamName())
	}
	return out
}

func kv(k jetstream.KeyValueConfig) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
	return k, jetstream.ObjectStoreConfig{}
}

func obj(o jetstream.ObjectStoreConfig) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
	return jetstream.KeyValueConfig{}, o
}

// Buckets is every bucket of the pipeline.
var Buckets = []Bucket{
	{Name: messages.BucketSiteState, Holds: "per-site cursor and run state", Writers: []string{Exporter},
		config: func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return kv(jetstream.KeyValueConfig{History: 5})
		}},
	{Name: messages.BucketLeases, Holds: "the run currently holding each site", Writers: []string{Exporter},
		config: func(c config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			// A crashed exporter's lease expires one ack wait after its
			// last renewal, when its request is redelivered.
			return kv(jetstream.KeyValueConfig{TTL: c.ExportAckWait.D()})
		}},
	{Name: messages.BucketDestVersion, Holds: "newest record version imported (latest wins)", Writers: []string{Importer},
		config: func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return kv(jetstream.KeyValueConfig{})
		}},
	{Name: messages.BucketMetadata, Holds: "metadata snapshots by site and hash", Writers: []string{Exporter, Importer}, Readers: []string{Transformer},
		config: func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return kv(jetstream.KeyValueConfig{History: 1, MaxValueSize: 8 << 20})
		}},
	{Name: messages.BucketRecordIDs, Object: true, Holds: "per-site record IDs and content hashes (deletions, unchanged detection)", Writers: []string{Exporter},
		config: func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return obj(jetstream.ObjectStoreConfig{})
		}},
	{Name: messages.BucketDeletions, Object: true, Holds: "per-site pending and held deletions", Writers: []string{Exporter},
		config: func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return obj(jetstream.ObjectStoreConfig{})
		}},
	{Name: messages.BucketDeletionDecisions, Holds: "operators' decisions on held deletions (written by relay deletions)", Readers: []string{Exporter},
		config: func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return kv(jetstream.KeyValueConfig{History: 1})
		}},
	{Name: messages.BucketFiles, Object: true, Holds: "files of kept file-upload fields, by content (never inside a message)", Writers: []string{Exporter}, Readers: []string{Importer},
		config: func(c config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			// As long as the records that refer to them can be replayed.
			return obj(jetstream.ObjectStoreConfig{TTL: c.CleanMaxAge.D()})
		}},
	{Name: messages.BucketDestFiles, Holds: "the file the destination holds at each file location (SHA-256)", Writers: []string{Importer},
		config: func(config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return kv(jetstream.KeyValueConfig{History: 1})
		}},
	{Name: messages.BucketDeletedRecords, Object: true, Holds: "destination rows of deleted records, for relay deletions restore", Writers: []string{Importer},
		config: func(c config.Streams) (jetstream.KeyValueConfig, jetstream.ObjectStoreConfig) {
			return obj(jetstream.ObjectStoreConfig{TTL: c.DeletedRetention.D()})
		}},
}
