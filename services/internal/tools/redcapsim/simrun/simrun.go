// Package simrun runs the REDCap simulator as a standalone server (the
// `relay sim` command): it loads project folders, issues tokens for projects
// that bring none, puts the fault-injection middleware in front, serves the
// fault admin API on a second port, and prints what it serves.
package simrun

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

// Options of Run.
type Options struct {
	Listen      string // API address, e.g. 127.0.0.1:8080
	Admin       string // fault admin address ("" = no admin API)
	DataDir     string // persist projects here ("" = memory only)
	ProjectsDir string // load every project folder in it (first start only when DataDir is set)
	// IssueTokens gives every loaded project without a tokens.csv one
	// full-rights token derived from its folder name (stable across runs).
	IssueTokens bool
	Version     string // REDCap version reported ("" = the simulator's default)
	// TimeZone is the server's clock zone (nil = UTC): rehearse a site
	// whose REDCap runs in its own zone.
	TimeZone *time.Location
	// SuperToken (64 letters and digits) allows project creation through
	// content=project and content=version with a super token.
	SuperToken string
	Faults     faults.Faults
	Logger     *slog.Logger
	Out        io.Writer // where the project list is printed
	// Ready, if set, receives the API URL once serving (tests).
	Ready func(apiURL, adminURL string)
}

// Project is one served project, as printed and kept in the manifest.
type Project struct {
	ID     int      `json:"id"`
	Folder string   `json:"folder"`
	Title  string   `json:"title,omitempty"`
	Tokens []string `json:"tokens,omitempty"`
	Issued bool     `json:"issued,omitempty"` // the token was made up by relay sim
}

var superTokenRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// manifestName sits in the data dir next to the simulator's own files so
// that a restart can list the projects it reloads.
const manifestName = "relay-sim.json"

// Run serves until ctx ends, then stops the servers and (with a data dir)
// lets the simulator write its snapshot.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	sim, err := redcapsim.New(redcapsim.Options{DataDir: o.DataDir, Logger: o.Logger, Version: o.Version, TimeZone: o.TimeZone})
	if err != nil {
		return err
	}
	defer sim.Close()

	projects, err := setUp(sim, o)
	if err != nil {
		return err
	}
	if o.SuperToken != "" {
		if len(o.SuperToken) != 64 || !superTokenRE.MatchString(o.SuperToken) {
			return errors.New("the super token must be 64 letters and digits (REDCap's super API tokens are 64 characters)")
		}
		sim.SetSuperToken(o.SuperToken)
	}

	inj := faults.New(sim.Handler(), sim.ProjectIDForToken)
	inj.SetBanDefault(o.Faults.BanThreshold)
	inj.SetRecordIDField(sim.RecordIDFieldForToken)
	if err := inj.Set(0, o.Faults); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	api := &http.Server{Handler: inj, ReadHeaderTimeout: 10 * time.Second}
	go api.Serve(inj.OutageListener(ln))
	defer api.Close()
	apiURL := "http://" + ln.Addr().String() + "/api/"

	adminURL := ""
	if o.Admin != "" {
		aln, err := net.Listen("tcp", o.Admin)
		if err != nil {
			return fmt.Errorf("listen on %s (fault admin): %w", o.Admin, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/faults", inj.AdminHandler())
		mux.Handle("/faults/", inj.AdminHandler())
		mux.Handle("/sim/", sim.AdminHandler())
		admin := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go admin.Serve(aln)
		defer admin.Close()
		adminURL = "http://" + aln.Addr().String() + "/faults"
	}

	fillTitles(ctx, apiURL, projects)
	printProjects(o.Out, apiURL, adminURL, projects, o.Faults)
	if o.SuperToken != "" {
		fmt.Fprintln(o.Out, "super token:      set (content=project creates projects; the token is not printed)")
	}
	o.Logger.Info("redcap simulator serving", "url", apiURL, "admin", adminURL, "projects", len(projects))
	if o.Ready != nil {
		o.Ready(apiURL, adminURL)
	}
	<-ctx.Done()
	o.Logger.Info("redcap simulator stopping")
	return nil
}

// setUp loads the project folders (or, on a restart with a data dir, reads
// the manifest of what was loaded before) and issues missing tokens.
func setUp(sim *redcapsim.Server, o Options) ([]Project, error) {
	if o.DataDir != "" {
		b, err := os.ReadFile(filepath.Join(o.DataDir, manifestName))
		if err == nil {
			var ps []Project
			if err := json.Unmarshal(b, &ps); err != nil {
				return nil, fmt.Errorf("%s is damaged (%v); delete it (and the data dir to reload the projects)", filepath.Join(o.DataDir, manifestName), err)
			}
			if o.ProjectsDir != "" {
				fmt.Fprintf(o.Out, "note: %s already holds the projects loaded before; --projects is ignored (delete the folder to reload)\n", o.DataDir)
			}
			return ps, nil
		}
		if hasPersisted(o.DataDir) {
			fmt.Fprintf(o.Out, "note: %s already holds projects; --projects is ignored\n", o.DataDir)
			return nil, nil
		}
	}
	var ps []Project
	if o.ProjectsDir != "" {
		dirs, err := projectFolders(o.ProjectsDir)
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			id, err := sim.LoadProject(d)
			if err != nil {
				return nil, err
			}
			p := Project{ID: id, Folder: filepath.Base(d)}
			p.Tokens, err = folderTokens(d)
			if err != nil {
				return nil, err
			}
			if len(p.Tokens) == 0 && o.IssueTokens {
				tok := IssuedToken(p.Folder)
				if err := sim.AddToken(id, tok, redcapsim.FullRights(), ""); err != nil {
					return nil, fmt.Errorf("project %s: %w", p.Folder, err)
				}
				p.Tokens, p.Issued = []string{tok}, true
			}
			ps = append(ps, p)
		}
	}
	if o.DataDir != "" {
		b, _ := json.MarshalIndent(ps, "", "  ")
		if err := os.WriteFile(filepath.Join(o.DataDir, manifestName), b, 0o600); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

func hasPersisted(dataDir string) bool {
	es, err := os.ReadDir(filepath.Join(dataDir, "projects"))
	if err != nil {
		return false
	}
	for _, e := range es {
		if _, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			return true
		}
	}
	return false
}

// projectFolders lists the folders the simulator can load, in name order
// (the order redcapsim.LoadDir uses).
func projectFolders(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("projects folder: %w", err)
	}
	var out []string
	for _, e := range es {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		for _, n := range []string{"project.xml", "dictionary.csv", "metadata.csv"} {
			if _, err := os.Stat(filepath.Join(sub, n)); err == nil {
				out = append(out, sub)
				break
			}
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("projects folder %s holds no project folder (one with project.xml, dictionary.csv or metadata.csv)", dir)
	}
	return out, nil
}

// folderTokens reads the token column of a project folder's tokens.csv.
func folderTokens(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, "tokens.csv"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, "tokens.csv"), err)
	}
	col := -1
	for i, h := range recs[0] {
		if strings.EqualFold(strings.TrimSpace(h), "token") {
			col = i
		}
	}
	if col < 0 {
		return nil, fmt.Errorf("%s has no token column", filepath.Join(dir, "tokens.csv"))
	}
	var out []string
	for _, r := range recs[1:] {
		if col < len(r) && strings.TrimSpace(r[col]) != "" {
			out = append(out, strings.TrimSpace(r[col]))
		}
	}
	return out, nil
}

// IssuedToken is the token relay sim gives a project folder without a
// tokens.csv: 32 upper-case hex characters, the same on every run, so
// that a demo config can name it. For the simulator only.
func IssuedToken(folder string) string {
	s := sha256.Sum256([]byte("redcap-relay simulator token\x00" + folder))
	return strings.ToUpper(hex.EncodeToString(s[:16]))
}

// fillTitles asks the simulator for each project's title through the API,
// as any client would.
func fillTitles(ctx context.Context, apiURL string, ps []Project) {
	for i := range ps {
		if ps[i].Title != "" || len(ps[i].Tokens) == 0 {
			continue
		}
		c, err := redcap.New(redcap.Options{Site: ps[i].Folder, URL: apiURL, Token: ps[i].Tokens[0], CallsPerMinute: -1, Timeout: 10 * time.Second})
		if err != nil {
			continue
		}
		if info, err := c.ExportProjectInfo(ctx); err == nil {
			ps[i].Title = info.ProjectTitle
		}
	}
}

func printProjects(w io.Writer, apiURL, adminURL string, ps []Project, f faults.Faults) {
	fmt.Fprintf(w, "REDCap simulator: %s\n", apiURL)
	if adminURL != "" {
		fmt.Fprintf(w, "fault admin:      %s  (GET/PUT/DELETE, ?project=N)\n", adminURL)
		fmt.Fprintf(w, "simulator admin:  %s  (POST ?project=N&record=R: change values without a change-log entry)\n", strings.TrimSuffix(adminURL, "/faults")+"/sim/silent-values")
	}
	if b, _ := json.Marshal(f); string(b) != "{}" {
		fmt.Fprintf(w, "faults:           %s\n", b)
	}
	if len(ps) == 0 {
		fmt.Fprintln(w, "no projects loaded (use --projects DIR)")
		return
	}
	for _, p := range ps {
		title := p.Title
		if title == "" {
			title = p.Folder
		}
		fmt.Fprintf(w, "project %d  %q  (folder %s)\n", p.ID, title, p.Folder)
		fmt.Fprintf(w, "  url    %s\n", apiURL)
		for _, t := range p.Tokens {
			note := ""
			if p.Issued {
				note = "  (issued by relay sim: full rights)"
			}
			fmt.Fprintf(w, "  token  %s%s\n", t, note)
		}
		if len(p.Tokens) == 0 {
			fmt.Fprintln(w, "  token  none (add tokens.csv to the folder, or run with --issue-tokens)")
		}
	}
}
