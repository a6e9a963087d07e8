// Command relay is REDCap Relay's single binary: one subcommand per service,
// `all` and `demo` for a single machine, `sim` for the REDCap simulator, and
// the operator tools. Each subcommand lives in its own file and registers
// itself with rootCmd from an init function; this file only runs it.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/pipeline/app"

	// Site schedules name IANA time zones; embed the database so they work
	// where the system has none (scratch images, minimal hosts).
	_ "time/tzdata"
)

var rootCmd = &cobra.Command{
	Use:           "relay",
	Short:         "REDCap Relay: scheduled, de-identified sync of many REDCap sites into one",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	stop := cpuProfile()
	code := run(os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// cpuProfile writes a CPU profile of the whole command when
// RELAY_CPUPROFILE names a path prefix (for the benchmark's child
// processes: <prefix>.<command>.<pid>.prof).
func cpuProfile() func() {
	prefix := os.Getenv("RELAY_CPUPROFILE")
	if prefix == "" {
		return func() {}
	}
	name := "relay"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	f, err := os.Create(fmt.Sprintf("%s.%s.%d.prof", prefix, name, os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay: RELAY_CPUPROFILE:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "relay: RELAY_CPUPROFILE:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// run executes one command line and reports a fatal error on stderr: one
// JSON line when the command logs JSON (--log-json, RELAY_LOG_JSON), so a
// log collector sees why a container stopped.
func run(args []string, stderr io.Writer) int {
	rootCmd.SetArgs(args)
	cmd, err := rootCmd.ExecuteC()
	if err == nil {
		return 0
	}
	if logsJSON(cmd) {
		attrs := []any{"command", strings.TrimPrefix(cmd.CommandPath(), "relay ")}
		if slices.Contains(app.All, cmd.Name()) {
			attrs = append(attrs, "service", cmd.Name())
		}
		slog.New(slog.NewJSONHandler(stderr, nil)).Error(err.Error(), attrs...)
	} else {
		fmt.Fprintln(stderr, "relay:", err)
	}
	return exitCode(err)
}

// logsJSON reports whether the command was asked for JSON lines.
func logsJSON(cmd *cobra.Command) bool {
	if cmd != nil {
		if v, err := cmd.Flags().GetBool("log-json"); err == nil {
			return v
		}
	}
	return os.Getenv("RELAY_LOG_JSON") != ""
}

// exitCoder lets a subcommand choose its exit status (relay check: 1 means
// deviations found, 2 means the check could not run).
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}
