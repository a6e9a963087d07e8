package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/redcap-relay/relay/messages"
)

// Bytes is a size written as 4GiB, 512MiB, 1GB or a plain number of bytes.
type Bytes int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseBytes reads a size such as "4GiB" or "1500000".
func ParseBytes(s string) (Bytes, error) {
	v := strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(v, u.suffix) {
			v, factor = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 512MiB, 4GiB)", s)
	}
	return Bytes(n * float64(factor)), nil
}

func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBytes(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

func (b Bytes) MarshalYAML() (any, error) { return b.String(), nil }

// String writes the size in the largest binary unit that divides it.
func (b Bytes) String() string {
	for i := 3; i >= 0; i-- {
		u := byteUnits[i]
		if b >= Bytes(u.factor) && int64(b)%u.factor == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.factor, u.suffix)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Stream names of the buckets, as JetStream (and `relay_stream_bytes`) names them.
const (
	KVPrefix  = "KV_"
	ObjPrefix = "OBJ_"
)

// MaxBytes caps each stream and bucket, keyed by its JetStream stream name
// (what `relay_stream_bytes` and the NATS tools show). A struct, not a map,
// so that Streams stays comparable.
type MaxBytes struct {
	ExportRequests Bytes `yaml:"EXPORT_REQUESTS"`
	RecordsRaw     Bytes `yaml:"RECORDS_RAW"`
	Metadata       Bytes `yaml:"METADATA"`
	RecordsClean   Bytes `yaml:"RECORDS_CLEAN"`
	Audit          Bytes `yaml:"AUDIT"`
	DLQ            Bytes `yaml:"DLQ"`
	Reports        Bytes `yaml:"REPORTS"`
	SiteState      Bytes `yaml:"KV_relay_site_state"`
	Leases         Bytes `yaml:"KV_relay_leases"`
	DestVersion    Bytes `yaml:"KV_relay_dest_version"`
	MetadataKV     Bytes `yaml:"KV_relay_metadata"`
	RecordIDs      Bytes `yaml:"OBJ_relay_record_ids"`
	Deletions      Bytes `yaml:"OBJ_relay_deletions"`
	Decisions      Bytes `yaml:"KV_relay_deletion_decisions"`
	DeletedRecords Bytes `yaml:"OBJ_relay_deleted_records"`
	Files          Bytes `yaml:"OBJ_relay_files"`
	DestFiles      Bytes `yaml:"KV_relay_dest_files"`
}

// fields pairs each stream name with its setting.
func (m *MaxBytes) fields() []struct {
	name string
	v    *Bytes
} {
	return []struct {
		name string
		v    *Bytes
	}{
		{messages.StreamExportRequests, &m.ExportRequests},
		{messages.StreamRecordsRaw, &m.RecordsRaw},
		{messages.StreamMetadata, &m.Metadata},
		{messages.StreamRecordsClean, &m.RecordsClean},
		{messages.StreamAudit, &m.Audit},
		{messages.StreamDLQ, &m.DLQ},
		{messages.StreamReports, &m.Reports},
		{KVPrefix + messages.BucketSiteState, &m.SiteState},
		{KVPrefix + messages.BucketLeases, &m.Leases},
		{KVPrefix + messages.BucketDestVersion, &m.DestVersion},
		{KVPrefix + messages.BucketMetadata, &m.MetadataKV},
		{ObjPrefix + messages.BucketRecordIDs, &m.RecordIDs},
		{ObjPrefix + messages.BucketDeletions, &m.Deletions},
		{KVPrefix + messages.BucketDeletionDecisions, &m.Decisions},
		{ObjPrefix + messages.BucketDeletedRecords, &m.DeletedRecords},
		{ObjPrefix + messages.BucketFiles, &m.Files},
		{KVPrefix + messages.BucketDestFiles, &m.DestFiles},
	}
}

// DefaultMaxBytes caps every stream and bucket, so a stream that discards
// new messages when full really is full at some point, long before the disk
// is. Their sum (about 20 GiB) must stay below the NATS server's
// max_file_store (deploy/nats/nats.conf: 32 GiB).
var DefaultMaxBytes = MaxBytes{
	ExportRequests: 64 << 20,
	RecordsRaw:     4 << 30,
	Metadata:       1 << 30,
	RecordsClean:   8 << 30,
	Audit:          2 << 30,
	DLQ:            1 << 30,
	Reports:        256 << 20,
	SiteState:      64 << 20,
	Leases:         16 << 20,
	DestVersion:    1 << 30,
	MetadataKV:     1 << 30,
	RecordIDs:      2 << 30,
	Deletions:      64 << 20,
	Decisions:      8 << 20,
	DeletedRecords: 512 << 20,
	Files:          2 << 30,
	DestFiles:      64 << 20,
}

// minStreamBytes is the smallest cap accepted: one large REDCap record
// (8 MiB, the NATS max payload) must fit.
const minStreamBytes = 8 << 20

// MaxBytesOf is the byte cap of a stream or bucket (by its stream name); 0
// for a name the pipeline does not have.
func (s Streams) MaxBytesOf(stream string) int64 {
	def := DefaultMaxBytes
	for i, f := range s.MaxBytes.fields() {
		if f.name == stream {
			if *f.v > 0 {
				return int64(*f.v)
			}
			return int64(*def.fields()[i].v)
		}
	}
	return 0
}

// TotalMaxBytes is the sum of every cap: what the NATS server must be able
// to reserve (its max_file_store).
func (s Streams) TotalMaxBytes() int64 {
	var sum int64
	for _, name := range StreamNames() {
		sum += s.MaxBytesOf(name)
	}
	return sum
}

// StreamNames lists the streams and buckets streams.max_bytes names.
func StreamNames() []string {
	var out []string
	for _, f := range (&MaxBytes{}).fields() {
		out = append(out, f.name)
	}
	return out
}

// applyByteDefaults fills max_bytes: the shorthands raw_max_bytes and
// clean_max_bytes first, then the defaults.
func (s *Streams) applyByteDefaults() {
	m := &s.MaxBytes
	if m.RecordsRaw == 0 {
		m.RecordsRaw = s.RawMaxBytes
	}
	if m.RecordsClean == 0 {
		m.RecordsClean = s.CleanMaxBytes
	}
	def := DefaultMaxBytes
	dv := def.fields()
	for i, f := range m.fields() {
		if *f.v == 0 {
			*f.v = *dv[i].v
		}
	}
}

// validateBytes names every cap too small to hold one record and a
// shorthand that contradicts max_bytes.
func (s Streams) validateBytes(add func(setting, format string, a ...any)) {
	for _, f := range s.MaxBytes.fields() {
		if *f.v < minStreamBytes {
			add("streams.max_bytes."+f.name, "%s is below 8MiB: one large record must fit", *f.v)
		}
	}
	for _, c := range []struct {
		setting, stream string
		short, full     Bytes
	}{
		{"streams.raw_max_bytes", messages.StreamRecordsRaw, s.RawMaxBytes, s.MaxBytes.RecordsRaw},
		{"streams.clean_max_bytes", messages.StreamRecordsClean, s.CleanMaxBytes, s.MaxBytes.RecordsClean},
	} {
		if c.short > 0 && c.short != c.full {
			add(c.setting, "%s contradicts streams.max_bytes.%s %s: give one", c.short, c.stream, c.full)
		}
	}
}

// Human writes the size rounded, e.g. "1.4 GiB", for tables.
func (b Bytes) Human() string {
	v, units := float64(b), []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", int64(b))
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
