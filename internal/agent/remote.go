package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
)

// Remote is a Server reached over HTTP: what `gantry agent` runs against.
// It knows one or more server URLs (several servers over one database) and
// moves to the next when one cannot be reached.
type Remote struct {
	servers []string
	token   string
	http    *http.Client
	log     *slog.Logger

	mu      sync.Mutex
	current int
	keys    map[int64]string // job ID -> lease key
}

// NewRemote returns a Server that calls the servers at these base URLs
// with an agent token.
func NewRemote(servers []string, token string, log *slog.Logger) *Remote {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Remote{servers: servers, token: token, log: log, keys: map[int64]string{},
		// No client timeout: each call has its own deadline, and a lease
		// request is held by the server for the long-poll time.
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}}}
}

func (r *Remote) client() (*api.Client, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &api.Client{Server: r.servers[r.current], Token: r.token, HTTP: r.http, Agent: true}, r.current
}

// failover moves to the next server after server i could not be reached.
func (r *Remote) failover(i int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current == i && len(r.servers) > 1 {
		r.current = (i + 1) % len(r.servers)
		r.log.LogAttrs(context.Background(), slog.LevelWarn, "server unreachable; trying the next",
			slog.String("failed", r.servers[i]), slog.String("next", r.servers[r.current]), slog.Any("err", err))
	}
}

// call makes one call and maps the answer: 401 is ErrRefused, 409 is
// store.ErrStaleLease. Transport errors and 5xx are retried with backoff
// for up to patience (a server restarting, a network cut shorter than the
// lease); other errors are returned at once.
func (r *Remote) call(ctx context.Context, path string, body, out any, timeout, patience time.Duration) (int, error) {
	start := time.Now()
	wait := 100 * time.Millisecond
	for {
		c, i := r.client()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		status, err := c.Do(cctx, "POST", path, body, out)
		cancel()
		var se *api.StatusError
		switch {
		case err == nil:
			return status, nil
		case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
			return status, fmt.Errorf("%w: %s", ErrRefused, se.Message)
		case errors.As(err, &se) && se.Status == http.StatusConflict:
			return status, fmt.Errorf("%s: %w", se.Message, store.ErrStaleLease)
		case errors.As(err, &se) && se.Status < 500:
			return status, err
		case ctx.Err() != nil:
			return 0, ctx.Err()
		}
		if se == nil {
			r.failover(i, err)
		}
		if time.Since(start)+wait > patience {
			return status, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// Lease asks for a job until one comes or ctx ends. The server holds each
// request until a job fits or its long-poll time passes; then it is asked
// again at once: an idle agent gets a job the moment one is queued.
func (r *Remote) Lease(ctx context.Context, self *store.Agent) (*queue.Assignment, error) {
	req := api.LeaseRequest{Name: self.Name, Labels: self.Labels, Capacity: self.Capacity, Version: self.Version}
	for {
		var l api.Lease
		status, err := r.call(ctx, "/api/v1/agent/lease", req, &l, queue.LongPoll+30*time.Second, 30*time.Second)
		if err != nil {
			return nil, err
		}
		if status == http.StatusNoContent {
			continue
		}
		r.mu.Lock()
		r.keys[l.JobID] = l.Key
		r.mu.Unlock()
		a := l.Assignment
		return &a, nil
	}
}

func (r *Remote) job(ctx context.Context, a *queue.Assignment, call string, rep api.JobReport) error {
	r.mu.Lock()
	rep.Key = r.keys[a.JobID]
	r.mu.Unlock()
	rep.BuildID, rep.Token = a.BuildID, a.Token
	// Keep trying for as long as the lease may still be ours: a network
	// cut shorter than the lease loses nothing.
	_, err := r.call(ctx, fmt.Sprintf("/api/v1/agent/jobs/%d/%s", a.JobID, call), rep, nil, 30*time.Second, a.LeaseTTL)
	return err
}

// Started tells the server the job began.
func (r *Remote) Started(ctx context.Context, a *queue.Assignment) error {
	return r.job(ctx, a, "started", api.JobReport{})
}

// Report sends a batch of the job's events.
func (r *Remote) Report(ctx context.Context, a *queue.Assignment, events []engine.Event) error {
	return r.job(ctx, a, "report", api.JobReport{Events: events})
}

// Heartbeat keeps the lease; it is not retried, the next one follows soon.
func (r *Remote) Heartbeat(ctx context.Context, a *queue.Assignment) error {
	r.mu.Lock()
	key := r.keys[a.JobID]
	r.mu.Unlock()
	_, err := r.call(ctx, fmt.Sprintf("/api/v1/agent/jobs/%d/heartbeat", a.JobID),
		api.JobReport{BuildID: a.BuildID, Token: a.Token, Key: key}, nil, 10*time.Second, 0)
	return err
}

// Finish sends the job's result and forgets its lease.
func (r *Remote) Finish(ctx context.Context, a *queue.Assignment, res *engine.JobResult) error {
	err := r.job(ctx, a, "finish", api.JobReport{Result: res})
	if err == nil || errors.Is(err, store.ErrStaleLease) || errors.Is(err, ErrRefused) {
		r.mu.Lock()
		delete(r.keys, a.JobID)
		r.mu.Unlock()
	}
	return err
}

// Seen tells the server what the agent says of itself (that it drains).
func (r *Remote) Seen(ctx context.Context, self *store.Agent) error {
	req := api.LeaseRequest{Name: self.Name, Labels: self.Labels, Capacity: self.Capacity, Version: self.Version, Draining: self.Draining}
	_, err := r.call(ctx, "/api/v1/agent/seen", req, nil, 10*time.Second, 0)
	return err
}
