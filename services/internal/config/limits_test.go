package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]Bytes{"4GiB": 4 << 30, "512MiB": 512 << 20, "1GB": 1e9, "1500000": 1500000, "1.5GiB": 3 << 29} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1GiB", "4 gigs"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q): no error", in)
		}
	}
	if s := Bytes(16 << 30).String(); s != "16GiB" {
		t.Errorf("String: %s", s)
	}
}

// Unset caps take the defaults, the shorthands set max_bytes, and a cap
// too small for one record, a contradicting shorthand or an unknown stream
// is reported with its line.
func TestStreamByteCaps(t *testing.T) {
	n, err := Load(writeNet(t, good+"streams:\n  raw_max_bytes: 2GiB\n  max_bytes:\n    AUDIT: 3GiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := n.Streams
	if s.MaxBytesOf("RECORDS_RAW") != 2<<30 || s.MaxBytesOf("AUDIT") != 3<<30 || s.MaxBytesOf("RECORDS_CLEAN") != 8<<30 || s.MaxBytesOf("KV_relay_site_state") != 64<<20 {
		t.Errorf("caps: %+v", s.MaxBytes)
	}
	if s.MaxBytesOf("NOPE") != 0 {
		t.Errorf("unknown stream cap %d", s.MaxBytesOf("NOPE"))
	}
	if total := DefaultStreams().TotalMaxBytes(); total > 24<<30 {
		t.Errorf("default caps sum to %s: more than nats.conf's max_file_store can hold with room to spare", Bytes(total))
	}

	_, err = Load(writeNet(t, good+"streams:\n  clean_max_bytes: 2GiB\n  max_bytes:\n    RECORDS_CLEAN: 3GiB\n    DLQ: 1MiB\n"))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a config.Error, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"line 15: streams.max_bytes.DLQ: 1MiB is below 8MiB", "line 12: streams.clean_max_bytes: 2GiB contradicts streams.max_bytes.RECORDS_CLEAN 3GiB"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	_, err = Load(writeNet(t, good+"streams:\n  max_bytes:\n    RECORDS_DIRTY: 3GiB\n"))
	if err == nil || !strings.Contains(err.Error(), "RECORDS_DIRTY") {
		t.Errorf("unknown stream: %v", err)
	}
}
