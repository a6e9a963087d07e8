package policy

import (
	"testing"

	"github.com/redcap-relay/relay/messages"
)

// A repair deletes a destination record the site does not have by its
// destination ID, and only inside the site's namespace.
func TestARepairDeletionNamesTheDestinationRecordInTheNamespace(t *testing.T) {
	c := mustCompile(t, healPolicy, healMeta(), opts())
	out, err := c.Apply(messages.RecordExported{Site: "site_a", DestRecordID: "A-77", Deleted: true})
	if err != nil || out.DestRecordID != "A-77" || !out.Deleted {
		t.Fatalf("repair deletion: %+v, %v", out, err)
	}
	if _, err := c.Apply(messages.RecordExported{Site: "site_a", DestRecordID: "B-77", Deleted: true}); err == nil {
		t.Fatal("a repair deletion outside the namespace was accepted")
	}
	// A record of the site keeps its derived destination ID, whatever it carries.
	out, err = c.Apply(messages.RecordExported{Site: "site_a", RecordID: "5", DestRecordID: "B-1", Deleted: true})
	if err != nil || out.DestRecordID != "A-5" {
		t.Fatalf("a deletion with a site ID: %+v, %v", out, err)
	}
}
