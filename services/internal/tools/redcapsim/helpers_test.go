package redcapsim

import (
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
)

const testToken = "0123456789ABCDEF0123456789ABCDEF"

type simEnv struct {
	t   *testing.T
	s   *Server
	url string
	pid int
}

// startSim starts a memory-only simulator on a loopback port.
func startSim(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, u
}

// loadFixture loads testdata/projects/<name> and adds testToken with full rights.
func loadFixture(t *testing.T, name string) *simEnv {
	t.Helper()
	s, u := startSim(t, Options{})
	pid, err := s.LoadProject(filepath.Join("testdata", "projects", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddToken(pid, testToken, FullRights(), ""); err != nil {
		t.Fatal(err)
	}
	return &simEnv{t: t, s: s, url: u, pid: pid}
}

// post sends a urlencoded form and returns status, content type and body.
func post(t testing.TB, u string, form url.Values) (int, string, string) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// call posts token + the given key/value pairs.
func (e *simEnv) call(kv ...string) (int, string) {
	e.t.Helper()
	return e.callTok(testToken, kv...)
}

func (e *simEnv) callTok(tok string, kv ...string) (int, string) {
	e.t.Helper()
	form := url.Values{"token": {tok}}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Add(kv[i], kv[i+1])
	}
	code, _, body := post(e.t, e.url, form)
	return code, body
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// postNoT is post for goroutines: no testing.T, the error as status 0.
func postNoT(u string, form url.Values) (int, string, string) {
	resp, err := http.PostForm(u, form)
	if err != nil {
		return 0, "", err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err.Error()
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}
