// Command relay is REDCap Relay's single binary: one subcommand per service,
// `all` and `demo` for a single machine, `sim` for the REDCap simulator, and
// the operator tools. Each subcommand lives in its own file and registers
// itself with rootCmd from an init function; this file only runs it.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

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
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(exitCode(err))
	}
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
