// Package sitemeta takes a site's metadata snapshot through the REDCap API:
// everything the transformer and checker need to know about a project.
package sitemeta

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
)

// Source is the part of a REDCap client a snapshot needs (*redcap.Client).
type Source interface {
	ExportVersion(ctx context.Context) (string, error)
	ExportProjectInfo(ctx context.Context) (messages.ProjectInfo, error)
	ExportMetadata(ctx context.Context, forms ...string) ([]messages.Field, error)
	ExportInstruments(ctx context.Context) ([]messages.Instrument, error)
	ExportArms(ctx context.Context) ([]messages.Arm, error)
	ExportEvents(ctx context.Context) ([]messages.Event, error)
	ExportFormEventMapping(ctx context.Context) ([]messages.FormEvent, error)
	ExportRepeating(ctx context.Context) ([]messages.RepeatingForm, error)
}

// Fetch exports the project's version, info, data dictionary, instruments,
// and (where the project has them) arms, events, form-event mapping and
// repeating setup, retrying each call on transient errors within p. Errors
// say which call failed for which site.
func Fetch(ctx context.Context, c Source, site string, p retry.Policy) (*messages.MetadataSnapshot, error) {
	s := &messages.MetadataSnapshot{V: messages.V, Site: site, TakenAt: time.Now().UTC()}
	var err error
	if s.REDCapVersion, err = retry.Value(ctx, p, func() (string, error) { return c.ExportVersion(ctx) }); err != nil {
		return nil, err
	}
	if s.Project, err = retry.Value(ctx, p, func() (messages.ProjectInfo, error) { return c.ExportProjectInfo(ctx) }); err != nil {
		return nil, err
	}
	if s.Fields, err = retry.Value(ctx, p, func() ([]messages.Field, error) { return c.ExportMetadata(ctx) }); err != nil {
		return nil, err
	}
	if len(s.Fields) == 0 {
		return nil, fmt.Errorf("site %s: the data dictionary is empty (does the token have rights to the project design?)", site)
	}
	if s.Instruments, err = retry.Value(ctx, p, func() ([]messages.Instrument, error) { return c.ExportInstruments(ctx) }); err != nil {
		return nil, err
	}
	if s.Project.IsLongitudinal == 1 {
		if s.Arms, err = retry.Value(ctx, p, func() ([]messages.Arm, error) { return c.ExportArms(ctx) }); err != nil {
			return nil, err
		}
		if s.Events, err = retry.Value(ctx, p, func() ([]messages.Event, error) { return c.ExportEvents(ctx) }); err != nil {
			return nil, err
		}
		if s.FormEventMapping, err = retry.Value(ctx, p, func() ([]messages.FormEvent, error) { return c.ExportFormEventMapping(ctx) }); err != nil {
			return nil, err
		}
	}
	if s.Project.HasRepeatingInstrumentsOrEvents == 1 {
		if s.Repeating, err = retry.Value(ctx, p, func() ([]messages.RepeatingForm, error) { return c.ExportRepeating(ctx) }); err != nil {
			return nil, err
		}
	}
	s.ComputeHash()
	return s, nil
}

// FieldsHash is the hash of the data dictionary alone: one cheap call tells
// an incremental run whether the full snapshot must be taken again.
func FieldsHash(fields []messages.Field) string { return messages.HashJSON(fields) }

// Load reads a metadata snapshot from the metadata bucket.
func Load(ctx context.Context, js jetstream.JetStream, key string) (*messages.MetadataSnapshot, error) {
	kv, err := js.KeyValue(ctx, messages.BucketMetadata)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	var s messages.MetadataSnapshot
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, fmt.Errorf("metadata snapshot %s: %w", key, err)
	}
	return &s, nil
}
