package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/agent"
	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// agentEnv is a server's API over a real SQLite store, with one queued
// job, and the secrets of an admin token and two agent tokens.
type agentEnv struct {
	url            string
	st             store.Store
	queue          *queue.Dispatcher
	admin, a, b    string
	buildID, jobID int64
}

func newAgentEnv(t testing.TB) *agentEnv {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	return newAgentEnvOn(t, st)
}

// newAgentEnvOn is newAgentEnv on a store of the caller's.
func newAgentEnvOn(t testing.TB, st store.Store) *agentEnv {
	t.Helper()
	ctx := t.Context()
	t.Cleanup(func() { st.Close() })
	builds := build.New(st, nil, nil, nil)
	d := queue.New(st, builds, nil, queue.Options{LeaseTTL: time.Minute})
	h := &api.Handler{Store: st, Builds: builds, Queue: d, LongPoll: 200 * time.Millisecond}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	e := &agentEnv{url: srv.URL, st: st, queue: d, admin: "admin-secret"}
	if err := st.CreateToken(ctx, &store.Token{Name: "admin", Hash: api.HashToken(e.admin), Admin: true}); err != nil {
		t.Fatal(err)
	}
	c := e.client(e.admin, false)
	for _, p := range []*string{&e.a, &e.b} {
		tok, err := c.CreateAgentToken(ctx, api.NewAgentToken{Name: "hosts", Labels: []string{"linux", "gpu"}})
		if err != nil {
			t.Fatal(err)
		}
		*p = tok.Token
	}
	r := &store.Repo{Name: "acme/app", CloneURL: "/nowhere", Forge: "github", WebhookSecret: "k"}
	if err := st.CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Event: "push", Branch: "main",
		Commit:   "0123456789abcdef0123456789abcdef01234567",
		Pipeline: []byte("jobs: {test: {runs-on: [linux], steps: [\"true\"]}}\n"),
		Jobs:     []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1, RunsOn: []string{"linux"}}}}
	if err := st.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	e.buildID, e.jobID = b.ID, b.Jobs[0].ID
	return e
}

func (e *agentEnv) client(token string, asAgent bool) *api.Client {
	return &api.Client{Server: e.url, Token: token, Agent: asAgent}
}

func status(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

func TestAgentCallsNeedAnAgentToken(t *testing.T) {
	e := newAgentEnv(t)
	ctx := t.Context()
	req := api.LeaseRequest{Name: "host-1", Labels: []string{"linux"}, Capacity: 1}

	// An API token cannot lease, an agent token cannot use the API.
	if _, err := e.client(e.admin, true).Do(ctx, "POST", "/api/v1/agent/lease", req, nil); status(err) != 401 {
		t.Errorf("lease with the admin token = %v, want 401", err)
	}
	if _, err := e.client(e.a, false).Builds(ctx, "", "", "", 0); status(err) != 401 {
		t.Errorf("list builds with an agent token = %v, want 401", err)
	}
	// An agent of another protocol version is told so.
	_, err := e.client(e.a, false).Do(ctx, "POST", "/api/v1/agent/lease", req, nil)
	if status(err) != 400 || !strings.Contains(err.Error(), "this server speaks version "+api.AgentProtocol) {
		t.Errorf("lease without the protocol header = %v, want 400 naming the version", err)
	}
	// A token that allows [linux gpu] cannot claim docker.
	bad := req
	bad.Labels = []string{"linux", "docker"}
	_, err = e.client(e.a, true).Do(ctx, "POST", "/api/v1/agent/lease", bad, nil)
	if status(err) != 403 || !strings.Contains(err.Error(), `does not allow label "docker"`) {
		t.Errorf("lease claiming a label the token does not allow = %v, want 403 naming it", err)
	}
	if j := e.job(t); j.Status != store.StatusQueued {
		t.Errorf("after refused leases the job is %s, want queued", j.Status)
	}
}

func (e *agentEnv) job(t *testing.T) *store.Job {
	t.Helper()
	b, err := e.st.Build(t.Context(), e.buildID)
	if err != nil {
		t.Fatal(err)
	}
	return b.Jobs[0]
}

// A holder of another agent token cannot write to a job leased under
// this one, even knowing its fencing token.
func TestAgentLeaseIsBoundToItsToken(t *testing.T) {
	e := newAgentEnv(t)
	ctx := t.Context()
	var l api.Lease
	code, err := e.client(e.a, true).Do(ctx, "POST", "/api/v1/agent/lease",
		api.LeaseRequest{Name: "host-a", Labels: []string{"linux"}, Capacity: 1}, &l)
	if err != nil || code != 200 || l.JobID != e.jobID || l.Key == "" {
		t.Fatalf("lease = %d %+v %v, want job %d with a key", code, l, err, e.jobID)
	}
	forged := api.JobReport{BuildID: l.BuildID, Token: l.Token, Key: l.Key,
		Events: []engine.Event{{Type: engine.Log, Data: []byte("forged\n")}}}
	_, err = e.client(e.b, true).Do(ctx, "POST", "/api/v1/agent/jobs/"+itoa(l.JobID)+"/report", forged, nil)
	if status(err) != 409 {
		t.Errorf("report under another agent token = %v, want 409", err)
	}
	if logs, _ := e.st.Logs(ctx, l.JobID, 0, 10); len(logs) != 0 {
		t.Errorf("a forged report was stored: %q", logs[0].Data)
	}
	// The rightful agent's report is stored.
	forged.Events[0].Data = []byte("mine\n")
	if _, err := e.client(e.a, true).Do(ctx, "POST", "/api/v1/agent/jobs/"+itoa(l.JobID)+"/report", forged, nil); err != nil {
		t.Errorf("report under the lease's token = %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// An idle agent is handed a job queued while it waits, and the long poll
// answers 204 when nothing comes.
func TestAgentLongPoll(t *testing.T) {
	e := newAgentEnv(t)
	ctx := t.Context()
	remote := agent.NewRemote([]string{e.url}, e.a, nil)
	self := &store.Agent{Name: "host-a", Labels: []string{"gpu"}, Capacity: 1}
	// Nothing fits gpu: the request is held, then answered 204, and asked
	// again until the context ends.
	cctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if _, err := remote.Lease(cctx, self); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lease with nothing to do = %v, want the context's deadline", err)
	}
	self.Labels = []string{"linux"}
	a, err := remote.Lease(ctx, self)
	if err != nil || a.JobID != e.jobID {
		t.Fatalf("Lease = %+v %v, want job %d", a, err, e.jobID)
	}
	if err := remote.Heartbeat(ctx, a); err != nil {
		t.Errorf("Heartbeat = %v", err)
	}
	if err := remote.Finish(ctx, a, &engine.JobResult{Name: "test", Status: engine.Success}); err != nil {
		t.Errorf("Finish = %v", err)
	}
	if j := e.job(t); j.Status != store.StatusSuccess {
		t.Errorf("job after Finish = %s, want success", j.Status)
	}
	// The lease is over: a late heartbeat is refused.
	if err := remote.Heartbeat(ctx, a); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Heartbeat after Finish = %v, want ErrStaleLease", err)
	}
}
