package topology

import (
	"os"
	"strings"
	"testing"
)

// The README's architecture tables are what operators read; a stream or
// bucket added here and not there is one they will not know to back up,
// watch or size.
func TestREADMENamesEveryStreamAndBucket(t *testing.T) {
	b, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, s := range Streams {
		if !strings.Contains(readme, "`"+s.Name+"`") {
			t.Errorf("README.md does not name stream %s", s.Name)
		}
	}
	for _, bk := range Buckets {
		if !strings.Contains(readme, "`"+bk.Name+"`") {
			t.Errorf("README.md does not name bucket %s", bk.Name)
		}
	}
	for _, st := range Stages {
		if !strings.Contains(readme, "| "+st.Name+" | `"+st.Reader+"`") {
			t.Errorf("README.md's stage table has no row for stage %s (read by %s)", st.Name, st.Reader)
		}
	}
}
