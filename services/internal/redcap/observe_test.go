package redcap_test

import (
	"sync"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

type seen struct {
	call, outcome string
	status        int
	dur           time.Duration
}

// Every call made through the client reaches the observer with its status
// and an outcome label: a success, a refused token, rejected data and a 503.
func TestObserverSeesEveryCall(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var got []seen
	obs := func(o *redcap.Options) {
		o.Observe = func(call string, status int, dur time.Duration, err error) {
			mu.Lock()
			got = append(got, seen{call, redcap.Outcome(status, err), status, dur})
			mu.Unlock()
		}
	}
	c := e.client(t, tokClassic, obs)
	if _, err := c.ExportVersion(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := c.ImportRecords(ctx, []messages.Row{{"record_id": "9", "weight": "heavy"}}, redcap.ImportParams{})
	if err == nil {
		t.Fatal("a non-number weight was imported")
	}
	bad := e.client(t, "99999999999999999999999999999999", obs)
	if _, err := bad.ExportVersion(ctx); err == nil {
		t.Fatal("an unknown token was accepted")
	}
	e.inj.Set(0, faults.Faults{ErrorRate: 1, ErrorStatuses: []int{503}})
	if _, err := c.ExportVersion(ctx); err == nil {
		t.Fatal("the 503 fault did not fail the call")
	}
	want := []seen{
		{"export version", "ok", 200, 0},
		{"import records", "rejected", 400, 0},
		{"export version", "permanent", 403, 0},
		{"export version", "transient", 503, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("observed %d calls, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.call != w.call || g.outcome != w.outcome || g.status != w.status || g.dur <= 0 {
			t.Errorf("call %d: observed %+v, want %+v (with a duration)", i, g, w)
		}
	}
}

func TestOutcomeOfNoAnswer(t *testing.T) {
	c, err := redcap.New(redcap.Options{Site: "site-a", URL: "http://127.0.0.1:1/api/", Token: tokClassic, CallsPerMinute: -1, Timeout: 2 * time.Second,
		Observe: func(call string, status int, _ time.Duration, err error) {
			if got := redcap.Outcome(status, err); got != "network" || status != 0 {
				t.Errorf("closed port: outcome %q status %d", got, status)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExportVersion(ctx); err == nil {
		t.Fatal("a closed port answered")
	}
}
