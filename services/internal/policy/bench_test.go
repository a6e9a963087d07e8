package policy

import (
	"fmt"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

// BenchmarkApply40Fields: one record of one row with 40 fields, a mix of
// kept codes, shifted dates, a hash, zip3, cap_age and dropped text. The
// target is ≤ 20 µs per record.
func BenchmarkApply40Fields(b *testing.B) {
	fields := []messages.Field{fld("record_id", "f", "text")}
	row := messages.Row{"record_id": "1001", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "", "redcap_repeat_instance": ""}
	for i := 0; i < 30; i++ {
		n := fmt.Sprintf("item_%d", i)
		fields = append(fields, fld(n, "f", "radio", "", "0, a | 1, b | 2, c | 3, d"))
		row[n] = "2"
	}
	for i := 0; i < 4; i++ {
		n := fmt.Sprintf("visit_%d", i)
		fields = append(fields, fld(n, "f", "text", "date_ymd"))
		row[n] = "2024-03-01"
	}
	fields = append(fields, fld("email", "f", "text", "email"), fld("zip", "f", "text", "zipcode"), fld("age", "f", "text", "integer"),
		fld("comments", "f", "notes"), fld("other", "f", "text"))
	row["email"], row["zip"], row["age"], row["comments"], row["other"] = "a@b.org", "27157", "93", "long text", "x"
	y := "name: bench\napproved: {forms: [f]}\ndates: shift\nfree_text: drop\nrules:\n  - field: email\n    rule: hash\n  - field: zip\n    rule: zip3\n  - field: age\n    rule: cap_age\n"
	c := mustCompile(b, y, snap(fields...), opts())
	rec := messages.RecordExported{Site: "site_a", RecordID: "1001", Rows: []messages.Row{row}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Apply(rec); err != nil {
			b.Fatal(err)
		}
	}
}
