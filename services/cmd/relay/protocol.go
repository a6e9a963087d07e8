package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/protocol"
)

func init() {
	pc := &cobra.Command{Use: "protocol", Short: "the protocol (core library) the check compares sites with"}
	var force bool
	write := &cobra.Command{
		Use:   "write DIR",
		Short: "write the built-in HEAL adult core library into DIR, to edit it (then set protocol: DIR/heal-adult.yaml in the network file)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := protocol.WriteLibrary(args[0], force)
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\n%d file(s) written; to use them, set in the network file:\n  protocol: %s\n",
				len(files), filepath.Join(args[0], "heal-adult.yaml"))
			return nil
		},
	}
	write.Flags().BoolVar(&force, "force", false, "overwrite files that exist")
	pc.AddCommand(write)
	rootCmd.AddCommand(pc)
}
