package exporter

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

var fileFields = append(append([]messages.Field(nil), testFields...),
	messages.Field{FieldName: "consent_pdf", FormName: "survey", FieldType: "file", FieldLabel: "Consent"},
	messages.Field{FieldName: "photo", FormName: "survey", FieldType: "file", FieldLabel: "Photo"})

const filePolicy = testPolicy + `  - field: consent_pdf
    rule: keep
    justification: the IRB approved transferring the signed consent
    max_size: 1KB
    types: [application/pdf]
`

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func fileUnit(t *testing.T) *unit {
	u := newUnit(t, 4, nil)
	u.site.fields = fileFields
	u.sites.policy = filePolicy
	u.store.dest = &messages.MetadataSnapshot{Fields: fileFields}
	u.site.files = map[string]fakeFile{}
	for _, id := range []string{"1", "2", "3"} {
		u.site.rows[id][0]["consent_pdf"] = "consent-" + id + ".pdf"
		u.site.rows[id][0]["photo"] = "face.jpg"
		u.site.files[id+"/consent_pdf"] = fakeFile{name: "consent-" + id + ".pdf", mime: "application/pdf", data: []byte("%PDF consent of " + id)}
		u.site.files[id+"/photo"] = fakeFile{name: "face.jpg", mime: "image/jpeg", data: []byte("JPEG")}
	}
	u.site.rows["4"][0]["consent_pdf"] = ""
	return u
}

func TestKeptFilesTravelByReferenceAndUnapprovedOnesNever(t *testing.T) {
	u := fileUnit(t)
	// Record 3's consent is too big for the policy.
	u.site.files["3/consent_pdf"] = fakeFile{name: "consent-3.pdf", mime: "application/pdf", data: []byte(strings.Repeat("x", 2000))}
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	got := map[string]messages.RecordExported{}
	for _, m := range u.store.take() {
		got[m.RecordID] = m
	}
	if len(got) != 4 {
		t.Fatalf("published %d records, want all 4 (a file that fails does not hold its record back)", len(got))
	}
	f := got["1"].Files
	want := sha([]byte("%PDF consent of 1"))
	if len(f) != 1 || f[0].Field != "consent_pdf" || f[0].SHA256 != want || f[0].Object != messages.FileObject(want) || f[0].Size != 17 {
		t.Fatalf("record 1's files %+v", f)
	}
	if string(u.store.objects[f[0].Object]) != "%PDF consent of 1" {
		t.Fatal("the file's content is not in the files bucket under its hash")
	}
	for _, m := range got {
		if _, ok := m.Rows[0]["photo"]; ok {
			t.Fatalf("record %s was exported with the unapproved photo field", m.RecordID)
		}
		for _, fr := range m.Files {
			if fr.Field == "photo" {
				t.Fatal("an unapproved file was transferred")
			}
		}
	}
	for obj, b := range u.store.objects {
		if string(b) == "JPEG" {
			t.Fatalf("the unapproved photo is in the files bucket as %s", obj)
		}
	}
	if f := got["4"].Files; len(f) != 1 || f[0].Object != "" {
		t.Fatalf("record 4 (no file) has files %+v: want an empty reference (the destination's file, if any, is removed)", f)
	}
	if len(got["3"].Files) != 0 {
		t.Fatalf("record 3's too-big file was passed on: %+v", got["3"].Files)
	}
	if len(u.store.letters) != 1 || !strings.Contains(u.store.letters[0].Error, "record alpha-3, field consent_pdf") ||
		!strings.Contains(u.store.letters[0].Error, "max_size") || strings.Contains(u.store.letters[0].Error, "consent-3.pdf") {
		t.Fatalf("dead letters %+v: want record 3's file, with the reason, never its name", u.store.letters)
	}
	// The next incremental run tries record 3 again (its file did not
	// make it), and only that record.
	u.site.files["3/consent_pdf"] = fakeFile{name: "consent-3.pdf", mime: "application/pdf", data: []byte("%PDF fixed")}
	if err := u.runAt(u.now.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	again := u.store.take()
	if len(again) != 1 || again[0].RecordID != "3" || len(again[0].Files) != 1 {
		t.Fatalf("next run published %v, want record 3 with its file", ids(again))
	}
}

func TestAFileReplacedUnderTheSameNameIsExportedAgain(t *testing.T) {
	u := fileUnit(t)
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	u.store.take()
	// Same file name, new content; the change log shows the record changed.
	u.site.files["2/consent_pdf"] = fakeFile{name: "consent-2.pdf", mime: "application/pdf", data: []byte("%PDF re-signed")}
	u.site.changed["2"] = u.now.Add(time.Minute)
	if err := u.runAt(u.now.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	got := u.store.take()
	if len(got) != 1 || got[0].RecordID != "2" || got[0].Files[0].SHA256 != sha([]byte("%PDF re-signed")) {
		t.Fatalf("published %+v, want record 2 with its new file", got)
	}
}

func TestAFileThatCannotBeTransferredIsDeadLetteredWithTheReason(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(u *unit)
		want string
	}{
		{"a type the policy refuses", func(u *unit) {
			u.site.files["1/consent_pdf"] = fakeFile{name: "x.exe", mime: "application/x-msdownload", data: []byte("MZ")}
		}, "does not allow"},
		{"REDCap's error", func(u *unit) { delete(u.site.files, "1/consent_pdf") }, "There is no file to download"},
		{"the files bucket full", func(u *unit) { u.store.putErr = errors.New("nats: maximum bytes exceeded") }, "maximum bytes exceeded"},
	} {
		u := fileUnit(t)
		c.set(u)
		if err := u.runAt(u.now, false); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var letter string
		for _, dl := range u.store.letters {
			if strings.Contains(dl.Error, "record alpha-1, field consent_pdf") {
				letter = dl.Error
			}
		}
		if !strings.Contains(letter, c.want) {
			t.Errorf("%s: dead letters %+v, want record 1's file with %q", c.name, u.store.letters, c.want)
		}
		if got := len(u.store.take()); got != 4 {
			t.Errorf("%s: %d records published, want all 4", c.name, got)
		}
	}
}
