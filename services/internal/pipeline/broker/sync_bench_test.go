package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkPublishSyncInterval publishes 10,000 record-sized messages (600
// bytes) through a Batch into a file stream, with the default sync interval
// and with fsync on every write (nats.sync_interval: always):
//
//	go test -run X -bench PublishSyncInterval -benchtime 1x ./services/internal/pipeline/broker/
func BenchmarkPublishSyncInterval(b *testing.B) {
	for _, mode := range []struct {
		name   string
		always bool
	}{{"default-2m", false}, {"always", true}} {
		b.Run(mode.name, func(b *testing.B) {
			srv, err := StartEmbedded(EmbeddedOptions{StoreDir: b.TempDir(), Port: -1, SyncAlways: mode.always})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			nc, err := Connect(ctx, srv.ClientURL(), ConnectOptions{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, _ := JetStream(nc)
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, Storage: jetstream.FileStorage}); err != nil {
				b.Fatal(err)
			}
			body := map[string]string{"v": strings.Repeat("x", 560)}
			const n = 10000
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				batch := NewBatch(js)
				for j := 0; j < n; j++ {
					if err := batch.Add(ctx, "b.site", fmt.Sprintf("%d.%d", i, j), Route{Site: "site"}, body); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
