package redcapsim

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentExportsImportsDeletes runs exports, imports of new records
// (IDs out of order, so the order index merges) and deletes at once; under
// -race it proves exports never write shared state, and afterwards every
// export lists exactly the stored records in REDCap's order.
func TestConcurrentExportsImportsDeletes(t *testing.T) {
	s, u := startSim(t, Options{})
	pid := benchProject(t, s)
	fill(t, s, pid, 200)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				code, _, body := postNoT(u, url.Values{"token": {testToken}, "content": {"record"}, "format": {"json"}, "fields[0]": {"record_id"}})
				if code != 200 || !strings.HasPrefix(body, "[") {
					errs <- fmt.Errorf("export: %d %.100s", code, body)
					return
				}
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 40; i++ {
			id := strconv.Itoa(1000 + rng.IntN(5000))
			data := `[{"record_id":"` + id + `","f01":"x"},{"record_id":"` + strconv.Itoa(300+i) + `","f01":"y"}]`
			if code, _, body := postNoT(u, url.Values{"token": {testToken}, "content": {"record"}, "format": {"json"}, "data": {data}}); code != 200 {
				errs <- fmt.Errorf("import: %d %s", code, body)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 1; i <= 40; i++ {
			if code, _, body := postNoT(u, url.Values{"token": {testToken}, "content": {"record"}, "action": {"delete"}, "records[0]": {strconv.Itoa(i * 3)}}); code != 200 {
				errs <- fmt.Errorf("delete: %d %s", code, body)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p := s.project(pid)
	p.mu.RLock()
	var stored []string
	for id := range p.records {
		stored = append(stored, id)
	}
	p.mu.RUnlock()
	sort.Slice(stored, func(i, j int) bool { return lessRecordID(stored[i], stored[j]) })
	rows, err := s.ExportRows(pid)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(rows))
	for i, r := range rows {
		got[i] = r["record_id"]
	}
	if strings.Join(got, ",") != strings.Join(stored, ",") {
		t.Fatalf("export order %v\nwant %v", got, stored)
	}
	if len(got) < 200 {
		t.Fatalf("%d records after the run: the 40 sequential and up to 40 random imports outnumber the 40 deletes", len(got))
	}
}

// TestOrderMergesOutOfOrderIDs checks the order index directly: appends,
// out-of-order additions, removals and DAG-style IDs.
func TestOrderMergesOutOfOrderIDs(t *testing.T) {
	p := &project{records: map[string]*record{}}
	for _, id := range []string{"1", "2", "10", "5", "abc", "3-1", "3-10", "3-2", "7"} {
		p.addRecord(&record{id: id})
	}
	p.removeRecord("2")
	p.settleOrder()
	var got []string
	for _, r := range p.sortedRecords() {
		got = append(got, r.id)
	}
	if want := "1,5,7,10,3-1,3-2,3-10,abc"; strings.Join(got, ",") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}
