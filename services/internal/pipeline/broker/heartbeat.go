package broker

import "time"

// Heartbeat calls beat every interval until stop is called; stop returns
// once no beat is running or can start. The pipeline uses it to tell
// JetStream that a message is still being worked on (in-progress acks) and
// to renew a site's lease during a run.
func Heartbeat(every time.Duration, beat func()) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				beat()
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
