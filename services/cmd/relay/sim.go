package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/simrun"
)

func init() {
	var o simrun.Options
	var f faults.Faults
	var latency, perRecord, outageFor time.Duration
	var banThreshold int
	var verbose bool
	var superTokenFile, zone string
	c := &cobra.Command{
		Use:   "sim",
		Short: "run the REDCap API simulator (with fault injection) for tests, demos and development",
		Long: `relay sim serves REDCap's API for every project folder in --projects (each
folder holds project.xml or dictionary.csv/metadata.csv, optional data.csv,
arm.csv, event.csv, dags.csv and tokens.csv). It prints each project's ID,
the API URL and its token(s); a folder without tokens.csv gets a stable
full-rights token derived from its name.

A super token (--super-token-file) lets clients create projects with
content=project, as REDCap's own integration tests do.

Faults set by flags apply to every project; change them at run time through
the admin API (--admin), e.g.
  curl -X PUT localhost:8081/faults -d '{"error_rate":0.1,"latency":"300ms"}'
  curl -X PUT 'localhost:8081/faults?project=2' -d '{"outage_for":"30s"}'
  curl -X DELETE localhost:8081/faults          # clear all, lift IP bans`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Latency = faults.Duration(latency)
			f.LatencyPerRecord = faults.Duration(perRecord)
			switch {
			case banThreshold == 0:
				f.BanThreshold = -1
			case banThreshold != faults.DefaultBanThreshold:
				f.BanThreshold = banThreshold
			}
			if outageFor > 0 {
				f.OutageFrom = time.Now()
				f.OutageUntil = f.OutageFrom.Add(outageFor)
			}
			if err := f.Validate(); err != nil {
				return fmt.Errorf("fault flags: %w", err)
			}
			o.Faults = f
			loc, err := time.LoadLocation(zone)
			if err != nil {
				return fmt.Errorf("--time-zone: %q is not a known time zone (e.g. UTC, America/New_York)", zone)
			}
			o.TimeZone = loc
			o.Out = cmd.OutOrStdout()
			if superTokenFile != "" || os.Getenv("RELAY_SIM_SUPER_TOKEN") != "" {
				env := ""
				if superTokenFile == "" {
					env = "RELAY_SIM_SUPER_TOKEN"
				}
				tok, err := redcap.ReadToken(superTokenFile, env)
				if err != nil {
					return fmt.Errorf("super token: %w", err)
				}
				o.SuperToken = tok
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, cancel := commandContext(0)
			defer cancel()
			return simrun.Run(ctx, o)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "API address (the API URL is http://ADDR/api/)")
	fl.StringVar(&o.Admin, "admin", "127.0.0.1:8081", "fault admin address (\"\" = none)")
	fl.StringVar(&o.DataDir, "data", "", "persist projects and data here (\"\" = memory only); a restart reloads them")
	fl.StringVar(&o.ProjectsDir, "projects", "", "load every project folder in this folder (first start only with --data)")
	fl.BoolVar(&o.IssueTokens, "issue-tokens", true, "give projects without tokens.csv a stable full-rights token")
	fl.StringVar(&zone, "time-zone", "UTC", "the server's clock zone: log times and dateRangeBegin are read in it, as on a real server (set the site's server_time_zone to match)")
	fl.StringVar(&o.Version, "redcap-version", "", "REDCap version to report (default 14.7.3)")
	fl.DurationVar(&latency, "latency", 0, "added to every call")
	fl.DurationVar(&perRecord, "latency-per-record", 0, "added per record in the request and in the answer")
	fl.Float64Var(&f.ErrorRate, "error-rate", 0, "share of calls answered with an HTTP error (see --error-statuses)")
	fl.IntSliceVar(&f.ErrorStatuses, "error-statuses", nil, "statuses for --error-rate (default 500,502,503,504)")
	fl.Float64Var(&f.EmptyRate, "empty-rate", 0, "share of calls answered 200 with an empty body (the call is still carried out)")
	fl.Float64Var(&f.HTMLRate, "html-rate", 0, "share of calls answered 200 with an HTML page")
	fl.Float64Var(&f.MemoryRate, "memory-rate", 0, `share of calls answered 200 with "REDCap ran out of server memory"`)
	fl.Float64Var(&f.MySQLRate, "mysql-rate", 0, "share of calls answered 200 with a MySQL connection error")
	fl.Float64Var(&f.TruncateRate, "truncate-rate", 0, "share of answers cut in half")
	fl.Float64Var(&f.CutRate, "cut-rate", 0, "share of answers whose connection is closed halfway through the body")
	fl.Float64Var(&f.DropRate, "drop-rate", 0, "share of rows silently dropped from record exports")
	fl.IntVar(&f.OmitRecords, "omit-records", 0, "records silently left out of each record-ID list answer (a JSON export of the record-ID field only)")
	fl.IntVar(&f.OmitAnswers, "omit-answers", 0, "with --omit-records: only the next this many such answers (0 = every one)")
	fl.IntVar(&f.SlowBodyBPS, "slow-body", 0, "send answers at this many bytes per second")
	fl.DurationVar(&outageFor, "outage-for", 0, "refuse every connection for this long after start")
	fl.IntVar(&banThreshold, "ban-threshold", faults.DefaultBanThreshold, "calls per minute per client IP before REDCap's permanent IP ban (429); 0 = off")
	fl.Uint64Var(&f.Seed, "seed", 0, "random seed for reproducible faults (0 = random)")
	fl.IntVar(&f.EveryN, "every-n", 0, "instead of random rates, fault every Nth call (cycling through the kinds set)")
	fl.StringVar(&superTokenFile, "super-token-file", os.Getenv("RELAY_SIM_SUPER_TOKEN_FILE"), "file holding a 64-character super API token, which lets content=project create projects (env RELAY_SIM_SUPER_TOKEN_FILE, or the token itself in RELAY_SIM_SUPER_TOKEN)")
	fl.BoolVarP(&verbose, "verbose", "v", false, "log every call: method, content, action, project, status and duration (never the token or values)")
	rootCmd.AddCommand(c)
}
