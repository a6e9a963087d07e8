package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
)

func requestRun(t *testing.T, n *testNet, site string, at time.Time) string {
	t.Helper()
	req := exportreq.New(site, at, false, "test")
	if err := exportreq.Publish(context.Background(), n.stack.JS, req); err != nil {
		t.Fatal(err)
	}
	return req.RunID
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
