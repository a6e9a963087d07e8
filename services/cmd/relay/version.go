package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// relayVersion is set at build time (scripts/build-images.sh:
// -ldflags "-X main.relayVersion=<git describe>"); backups record it.
var relayVersion = "dev"

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "print the relay version (the image tag it was built as)",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), relayVersion) },
	})
}
