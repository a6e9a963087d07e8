package ops

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestComposeEndToEnd runs scripts/compose-e2e.sh: the docker-compose
// deployment with scaled transformers, a destination outage, a replay, a
// NATS SIGKILL and the permission check. It needs RELAY_COMPOSE_E2E=1 and a
// Docker engine (it builds images and starts containers for minutes).
func TestComposeEndToEnd(t *testing.T) {
	if os.Getenv("RELAY_COMPOSE_E2E") != "1" {
		t.Skip("compose end-to-end: set RELAY_COMPOSE_E2E=1 to run scripts/compose-e2e.sh (needs a Docker engine and docker-compose)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("compose end-to-end: no Docker engine answers (docker info: %v)", err)
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("compose end-to-end: docker-compose is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../../scripts/compose-e2e.sh")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/compose-e2e.sh: %v", err)
	}
}
