package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops/backup"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// backupKey reads the file-encryption key: --key-file, else none when
// --plain, else an error (a JetStream snapshot is plain even from an
// encrypted store, and RECORDS_RAW holds approved PHI).
func backupKey(keyFile string, plain bool) ([]byte, error) {
	switch {
	case keyFile != "" && plain:
		return nil, errors.New("give --key-file or --plain, not both")
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("--key-file: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if len(k) < 16 {
			return nil, fmt.Errorf("--key-file %s holds %d characters; a key needs at least 16", keyFile, len(k))
		}
		return []byte(k), nil
	case plain:
		return nil, nil
	}
	return nil, errors.New("give --key-file (the NATS store key, e.g. /run/secrets/nats_store_key; env RELAY_BACKUP_KEY_FILE) to encrypt the backup, or --plain: JetStream's snapshot is plain even from an encrypted store, and RECORDS_RAW holds approved PHI")
}

func init() {
	var f natsFlags
	var out, keyFile string
	var plain bool
	bk := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "snapshot every stream and bucket of the pipeline into one file (encrypted with the store key)",
		Long: `relay backup takes JetStream's own snapshot ($JS.API.STREAM.SNAPSHOT) of every
stream and bucket the pipeline keeps: site cursors and record-ID sets,
metadata, the raw and clean records (the replay window), destination
versions, the audit, dead letters and protocol reports, with each stream's
consumers and their cursors. Cursors are taken before the data they point
past, so a backup taken while the pipeline runs restores to a state that
redoes a little work and loses none (an idle pipeline is best: it says what
was in progress).

A JetStream snapshot is plain even when the store is encrypted at rest, so
the file is encrypted with a key derived from --key-file (the store key)
unless --plain. The file is written to FILE.partial and renamed when
complete: a full disk leaves no half backup.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required")
			}
			key, err := backupKey(keyFile, plain)
			if err != nil {
				return err
			}
			ctx, cancel := commandContext(0)
			defer cancel()
			nc, js, _, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			start := time.Now()
			sum, err := backup.WriteFile(ctx, nc, js, out, backup.Options{Key: key, Relay: relayVersion})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			printBackup(w, sum)
			fmt.Fprintf(w, "backup written to %s: %s in %s, %s\n", out, config.Bytes(sum.FileBytes).Human(), time.Since(start).Round(time.Millisecond), encryption(sum))
			return nil
		},
	}
	f.add(bk)
	bk.Flags().StringVar(&out, "out", "", "backup file to write")
	bk.Flags().StringVar(&keyFile, "key-file", os.Getenv("RELAY_BACKUP_KEY_FILE"), "encrypt with a key derived from this file: the NATS store key (env RELAY_BACKUP_KEY_FILE)")
	bk.Flags().BoolVar(&plain, "plain", false, "write the backup unencrypted (it holds RECORDS_RAW's approved PHI in the clear)")
	rootCmd.AddCommand(bk)

	var rf natsFlags
	var rKeyFile string
	var replace, check bool
	rs := &cobra.Command{
		Use:   "restore FILE",
		Short: "restore a backup into an empty JetStream store, then provision",
		Long: `relay restore checks the whole file first (format, key, every checksum),
then restores every stream of it ($JS.API.STREAM.RESTORE) with its consumers
and cursors, and provisions (the leases bucket, today's settings). It
refuses streams that exist (restore into a new nats-data volume, or pass
--replace to delete streams no service uses) and a running pipeline, and
restores all streams or none: when one fails (a full disk, the server's
max_file_store), those restored before it are removed again.
--check only checks the file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var key []byte
			if rKeyFile != "" {
				var err error
				if key, err = backupKey(rKeyFile, false); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if check {
				sum, err := backup.Inspect(args[0], key)
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				printBackup(w, sum)
				fmt.Fprintf(w, "%s is a complete backup taken %s by relay %s, %s\n", args[0], sum.Created.Format(time.RFC3339), sum.Relay, encryption(sum))
				return nil
			}
			ctx, cancel := commandContext(0)
			defer cancel()
			nc, js, net, err := rf.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			start := time.Now()
			sum, err := backup.RestoreFile(ctx, nc, js, args[0], backup.RestoreOptions{Key: key, Replace: replace})
			if err != nil {
				return err
			}
			printBackup(w, sum)
			fmt.Fprintf(w, "restored %d stream(s) from %s (taken %s by relay %s) in %s\n", len(sum.Streams), args[0], sum.Created.Format(time.RFC3339), sum.Relay, time.Since(start).Round(time.Millisecond))
			streams := config.DefaultStreams()
			if net != nil {
				streams = net.Streams
			}
			changes, err := broker.ProvisionChanges(ctx, js, streams)
			for _, ch := range changes {
				fmt.Fprintf(w, "  provision changed %s\n", ch)
			}
			if err != nil {
				return fmt.Errorf("restored, but provisioning failed: %w (fix it and run relay provision)", err)
			}
			fmt.Fprintln(w, "provisioned: start the services")
			return nil
		},
	}
	rf.add(rs)
	rs.Flags().StringVar(&rKeyFile, "key-file", os.Getenv("RELAY_BACKUP_KEY_FILE"), "the key the backup was encrypted with (env RELAY_BACKUP_KEY_FILE)")
	rs.Flags().BoolVar(&replace, "replace", false, "delete the pipeline's streams that exist first (only when no service reads them)")
	rs.Flags().BoolVar(&check, "check", false, "only check the file (format, key, checksums); touch no server")
	rootCmd.AddCommand(rs)
}

func encryption(s *backup.Summary) string {
	if s.Encrypted {
		return "encrypted (key id " + s.KeyID + ")"
	}
	return "NOT encrypted"
}

func printBackup(w io.Writer, s *backup.Summary) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tSTORED\tCONSUMERS\tSNAPSHOT")
	for _, ss := range s.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", ss.Name, ss.Msgs, config.Bytes(ss.Bytes).Human(), ss.Consumers, config.Bytes(ss.Snapshot).Human())
	}
	tw.Flush()
	for _, b := range s.Busy {
		fmt.Fprintf(w, "note: in progress when the backup was taken (redone after a restore): %s\n", b)
	}
}
