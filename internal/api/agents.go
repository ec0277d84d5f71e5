package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
)

// The agent protocol: HTTP/1.1 with JSON bodies, every request made by the
// agent (it needs only outbound access to the server). An idle agent holds
// one long-poll request per free slot at POST /api/v1/agent/lease; the
// server answers the moment a job fits, or 204 after the long-poll time,
// and the agent asks again at once. A running job's heartbeat, log batches
// and result are plain POSTs carrying the lease's fencing token and key.

// AgentProtocol is the version of the agent protocol; an agent sends it
// in the Gantry-Agent-Protocol header and a server that speaks another
// refuses it with a message that says so. Version 2 added the job's
// secrets to a lease, which an agent of version 1 would drop. Version 3
// added artifacts: an agent of version 2 would neither upload a job's nor
// place and check a release's before a deployment's first step.
const AgentProtocol = "3"

const protocolHeader = "Gantry-Agent-Protocol"

// LeaseRequest is the body of POST /api/v1/agent/lease: the agent
// describes itself.
type LeaseRequest struct {
	Name     string   `json:"name"`
	Labels   []string `json:"labels"`
	Capacity int      `json:"capacity"`
	Version  string   `json:"version"`
	// Draining, on POST /api/v1/agent/seen: the agent takes no new job.
	Draining bool `json:"draining,omitempty"`
}

// Lease is a leased job as the agent receives it.
type Lease struct {
	queue.Assignment
	// Key proves on every later call that the caller holds the agent
	// token the job was leased to; lease tokens alone are guessable.
	Key string `json:"key"`
}

// JobReport is the body of the calls an agent makes about a leased job.
type JobReport struct {
	BuildID int64             `json:"build_id"`
	Token   int64             `json:"token"`
	Key     string            `json:"key"`
	Events  []engine.Event    `json:"events,omitempty"`
	Result  *engine.JobResult `json:"result,omitempty"`
}

// AgentToken is an agent token as the API shows it; Token (the secret) is
// set only in the answer that created it.
type AgentToken struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Labels    []string   `json:"labels"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Token     string     `json:"token,omitempty"`
}

// NewAgentToken is the body of POST /api/v1/agent-tokens.
type NewAgentToken struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels"`
}

// Agent is an agent as `gantry agents` shows it.
type Agent struct {
	Name      string       `json:"name"`
	State     string       `json:"state"`
	Labels    []string     `json:"labels"`
	Capacity  int          `json:"capacity"`
	Version   string       `json:"version"`
	TokenID   int64        `json:"token_id,omitempty"`
	FirstSeen time.Time    `json:"first_seen"`
	LastSeen  time.Time    `json:"last_seen"`
	Running   []RunningJob `json:"running"`
}

// RunningJob is a job an agent runs.
type RunningJob struct {
	BuildID int64     `json:"build_id"`
	Job     string    `json:"job"`
	Attempt int       `json:"attempt"`
	Since   time.Time `json:"since"`
}

// QueuedJob is a job that waits, with why.
type QueuedJob struct {
	BuildID     int64     `json:"build_id"`
	BuildNumber int64     `json:"build_number"`
	Repo        string    `json:"repo"`
	Branch      string    `json:"branch"`
	Job         string    `json:"job"`
	Status      string    `json:"status"`
	RunsOn      []string  `json:"runs_on"`
	Since       time.Time `json:"since"`
	Reason      string    `json:"reason"`
}

// Lock is a resource pool as the API shows it.
type Lock struct {
	Name      string    `json:"name"`
	Capacity  int       `json:"capacity"`
	CreatedAt time.Time `json:"created_at"`
	// Holders are the running jobs that hold a unit.
	Holders []RunningJob `json:"holders"`
}

// NewLock is the body of POST /api/v1/locks.
type NewLock struct {
	Name     string `json:"name"`
	Capacity int    `json:"capacity"`
}

// forbidden is a request the caller's token may not make.
type forbidden struct{ msg string }

func (e *forbidden) Error() string { return e.msg }

func (h *Handler) registerAgents(mux *http.ServeMux) {
	agentRoute := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, tok *store.Token) error) {
		mux.Handle(pattern, h.adaptKind(store.TokenAgent, fn))
	}
	agentRoute("POST /api/v1/agent/lease", h.agentLease)
	agentRoute("POST /api/v1/agent/seen", h.agentSeen)
	agentRoute("POST /api/v1/agent/jobs/{id}/{call}", h.agentJob)
}

// leaseKey binds a lease to the agent token it was handed to.
func leaseKey(tok *store.Token, jobID, lease int64) string {
	m := hmac.New(sha256.New, tok.Hash)
	fmt.Fprintf(m, "%d/%d", jobID, lease)
	return hex.EncodeToString(m.Sum(nil))
}

func validLabel(l string) bool {
	return l != "" && len(l) <= 64 && !strings.ContainsAny(l, " \t\r\n,[]")
}

// agentSelf reads and checks what an agent says of itself.
func agentSelf(r *http.Request, tok *store.Token) (*store.Agent, error) {
	var req LeaseRequest
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Name == "" || len(req.Name) > 128 || strings.ContainsAny(req.Name, " \t\r\n") {
		return nil, badRequestf("agent name %q: want 1 to 128 characters without spaces", req.Name)
	}
	for _, l := range req.Labels {
		if !validLabel(l) {
			return nil, badRequestf("label %q: want 1 to 64 characters without spaces, commas or brackets", l)
		}
		if len(tok.Labels) > 0 && !slices.Contains(tok.Labels, l) {
			return nil, &forbidden{fmt.Sprintf("agent token %q does not allow label %q (it allows [%s])", tok.Name, l, strings.Join(tok.Labels, " "))}
		}
	}
	if len(req.Labels) == 0 {
		req.Labels = tok.Labels
	}
	return &store.Agent{Name: req.Name, TokenID: tok.ID, Labels: req.Labels, Capacity: max(req.Capacity, 1),
		Version: req.Version, Draining: req.Draining}, nil
}

func (h *Handler) agentSeen(w http.ResponseWriter, r *http.Request, tok *store.Token) error {
	self, err := agentSelf(r, tok)
	if err != nil {
		return err
	}
	if err := h.Queue.Seen(r.Context(), self); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) agentLease(w http.ResponseWriter, r *http.Request, tok *store.Token) error {
	self, err := agentSelf(r, tok)
	if err != nil {
		return err
	}
	wait := h.LongPoll
	if wait <= 0 {
		wait = queue.LongPoll
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	a, err := h.Queue.Lease(ctx, self)
	if err != nil {
		if ctx.Err() != nil && r.Context().Err() == nil {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return err
	}
	if r.Context().Err() != nil {
		// The agent hung up while the job was leased: give it back.
		return h.Builds.Withdraw(context.WithoutCancel(r.Context()), a.BuildID, a.JobID, a.Token,
			"agent hung up before it received the job", true)
	}
	return WriteJSON(w, http.StatusOK, Lease{Assignment: *a, Key: leaseKey(tok, a.JobID, a.Token)})
}

func (h *Handler) agentJob(w http.ResponseWriter, r *http.Request, tok *store.Token) error {
	jobID, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || jobID <= 0 {
		return badRequestf("job ID %q: want a positive number", r.PathValue("id"))
	}
	var rep JobReport
	dec := readJSON
	if r.PathValue("call") == "report" {
		dec = readJSONLarge
	}
	if err := dec(r, &rep); err != nil {
		return err
	}
	if !hmac.Equal([]byte(rep.Key), []byte(leaseKey(tok, jobID, rep.Token))) {
		return fmt.Errorf("job %d: %w: not leased to this agent token", jobID, store.ErrStaleLease)
	}
	a := &queue.Assignment{BuildID: rep.BuildID, JobID: jobID, Token: rep.Token}
	ctx := r.Context()
	switch r.PathValue("call") {
	case "started":
		err = h.Queue.Started(ctx, a)
	case "heartbeat":
		err = h.Queue.Heartbeat(ctx, a)
	case "report":
		err = h.Queue.Report(ctx, a, rep.Events)
	case "finish":
		if rep.Result == nil {
			return badRequestf("finish: result is missing")
		}
		err = h.Queue.Finish(ctx, a, rep.Result)
	default:
		return fmt.Errorf("agent call %q: %w", r.PathValue("call"), store.ErrNotFound)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func agentToken(t *store.Token) AgentToken {
	at := AgentToken{ID: t.ID, Name: t.Name, Labels: t.Labels, CreatedAt: t.CreatedAt}
	if !t.RevokedAt.IsZero() {
		at.RevokedAt = &t.RevokedAt
	}
	if at.Labels == nil {
		at.Labels = []string{}
	}
	return at
}

func (h *Handler) createAgentToken(w http.ResponseWriter, r *http.Request) error {
	var req NewAgentToken
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Name == "" || len(req.Name) > 128 {
		return badRequestf("agent token name %q: want 1 to 128 characters", req.Name)
	}
	for _, l := range req.Labels {
		if !validLabel(l) {
			return badRequestf("label %q: want 1 to 64 characters without spaces, commas or brackets", l)
		}
	}
	secret := NewSecret("gantry_agent_")
	t := &store.Token{Name: req.Name, Hash: HashToken(secret), Kind: store.TokenAgent, Labels: req.Labels}
	if err := h.Store.CreateToken(r.Context(), t); err != nil {
		return err
	}
	if err := h.audit(r, "token.create", fmt.Sprintf("token:%d", t.ID), map[string]string{
		"kind": t.Kind, "name": t.Name, "labels": strings.Join(t.Labels, " ")}); err != nil {
		return err
	}
	at := agentToken(t)
	at.Token = secret
	return WriteJSON(w, http.StatusCreated, at)
}

// NewSecret returns a random token secret with a prefix that says what it
// is, so that a leaked one is recognised.
func NewSecret(prefix string) string {
	var b [24]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (h *Handler) listAgentTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := h.Store.Tokens(r.Context(), store.TokenAgent)
	if err != nil {
		return err
	}
	return writeList(w, ts, agentToken)
}

func (h *Handler) revokeAgentToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "agent token")
	if err != nil {
		return err
	}
	// Look before revoking: this route must not revoke an API token.
	agentTokens, err := h.Store.Tokens(r.Context(), store.TokenAgent)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(agentTokens, func(t *store.Token) bool { return t.ID == id }) {
		return fmt.Errorf("agent token %d: %w", id, store.ErrNotFound)
	}
	t, err := h.Store.RevokeToken(r.Context(), id)
	if err != nil {
		return err
	}
	// Its agents' next call is refused; their jobs go elsewhere now.
	if err := h.audit(r, "token.revoke", fmt.Sprintf("token:%d", t.ID), map[string]string{"kind": t.Kind, "name": t.Name}); err != nil {
		return err
	}
	if err := h.Queue.Withdraw(context.WithoutCancel(r.Context()), t.ID, fmt.Sprintf("agent token %q was revoked", t.Name)); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, agentToken(t))
}

func (h *Handler) listAgents(w http.ResponseWriter, r *http.Request) error {
	agents, err := h.Queue.Agents(r.Context())
	if err != nil {
		return err
	}
	out := []Agent{}
	for _, a := range agents {
		v := Agent{Name: a.Name, State: a.State, Labels: a.Labels, Capacity: a.Capacity, Version: a.Version,
			TokenID: a.TokenID, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, Running: []RunningJob{}}
		if v.Labels == nil {
			v.Labels = []string{}
		}
		for _, j := range a.Running {
			v.Running = append(v.Running, RunningJob{BuildID: j.BuildID, Job: j.Name, Attempt: j.Attempt, Since: j.StartedAt})
		}
		out = append(out, v)
	}
	return WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) listQueue(w http.ResponseWriter, r *http.Request) error {
	id := identityOf(r.Context())
	out, err := h.queued(r.Context(), func(repo string) bool { return id.can(store.RoleViewer, repo) })
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, out)
}

// queued returns the jobs that wait, of the repos visible says the caller
// may see, oldest first, each with why it waits.
func (h *Handler) queued(ctx context.Context, visible func(repo string) bool) ([]QueuedJob, error) {
	out := []QueuedJob{}
	for _, status := range []string{store.StatusQueued, store.StatusRunning} {
		builds, err := h.Store.Builds(ctx, store.BuildFilter{Status: status, Limit: 500})
		if err != nil {
			return nil, err
		}
		for _, b := range builds {
			var pl *plan.Plan // read once per build, for its pending jobs
			for _, j := range b.Jobs {
				if j.Status != store.StatusQueued && j.Status != store.StatusPending {
					continue
				}
				if !visible(b.Repo) {
					continue
				}
				q := QueuedJob{BuildID: b.ID, BuildNumber: b.Number, Repo: b.Repo, Branch: b.Branch, Job: j.Name,
					Status: j.Status, RunsOn: j.RunsOn, Since: j.QueuedAt, Reason: j.Reason}
				if q.Since.IsZero() {
					q.Since = j.CreatedAt
				}
				if q.RunsOn == nil {
					q.RunsOn = []string{}
				}
				if j.Status == store.StatusPending {
					if pl == nil {
						if full, err := h.Store.Build(ctx, b.ID); err == nil {
							pl, _ = build.Plan(full)
						}
					}
					q.Reason = "waiting for needs: " + strings.Join(unfinishedNeeds(b, pl, j.Name), ", ")
				}
				out = append(out, q)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b QueuedJob) int { return a.Since.Compare(b.Since) })
	return out, nil
}

// unfinishedNeeds names the jobs that job needs and that have not finished.
func unfinishedNeeds(b *store.Build, pl *plan.Plan, job string) []string {
	if pl == nil {
		return nil
	}
	status := map[string]string{}
	for _, j := range b.Jobs {
		status[j.Name] = j.Status
	}
	var names []string
	for _, pj := range pl.Jobs {
		if pj.Name != job {
			continue
		}
		for _, n := range pj.Needs {
			if !store.Finished(status[n]) {
				names = append(names, n)
			}
		}
	}
	return names
}

func (h *Handler) addLock(w http.ResponseWriter, r *http.Request) error {
	var req NewLock
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if !validLabel(req.Name) {
		return badRequestf("lock name %q: want 1 to 64 characters without spaces, commas or brackets", req.Name)
	}
	if req.Capacity < 1 || req.Capacity > 100000 {
		return badRequestf("lock %s: capacity %d: want 1 to 100000", req.Name, req.Capacity)
	}
	l := &store.Lock{Name: req.Name, Capacity: req.Capacity}
	if err := h.Store.CreateLock(r.Context(), l); err != nil {
		return err
	}
	if err := h.audit(r, "lock.add", "lock:"+l.Name, map[string]string{"capacity": strconv.Itoa(l.Capacity)}); err != nil {
		return err
	}
	h.Queue.Notify() // jobs may have waited for it to exist
	return WriteJSON(w, http.StatusCreated, Lock{Name: l.Name, Capacity: l.Capacity, CreatedAt: l.CreatedAt, Holders: []RunningJob{}})
}

func (h *Handler) listLocks(w http.ResponseWriter, r *http.Request) error {
	locks, err := h.Store.Locks(r.Context())
	if err != nil {
		return err
	}
	running, err := h.Store.RunningJobs(r.Context())
	if err != nil {
		return err
	}
	out := []Lock{}
	for _, l := range locks {
		v := Lock{Name: l.Name, Capacity: l.Capacity, CreatedAt: l.CreatedAt, Holders: []RunningJob{}}
		for _, j := range running {
			if slices.Contains(j.Locks, l.Name) {
				v.Holders = append(v.Holders, RunningJob{BuildID: j.BuildID, Job: j.Name, Attempt: j.Attempt, Since: j.StartedAt})
			}
		}
		out = append(out, v)
	}
	return WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) deleteLock(w http.ResponseWriter, r *http.Request) error {
	if err := h.Store.DeleteLock(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	if err := h.audit(r, "lock.rm", "lock:"+r.PathValue("name"), nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
