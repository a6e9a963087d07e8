package ops

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Healthcheck asks a service's /readyz (or any URL) and returns nil on a 2xx
// answer. It is the container healthcheck: scratch images have no shell or
// curl, so `relay healthcheck` does the request itself.
func Healthcheck(ctx context.Context, url string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck URL %q: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: no answer: %w (is the service running with --metrics on that port?)", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
