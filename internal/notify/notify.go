// Package notify tells the world what builds and deployments do: it posts
// commit statuses to the forge (one for the build, one per job), GitHub
// deployments and their statuses, and events to hooks (signed JSON, or
// Slack-compatible chat messages), renders status badges, and records the
// issue keys builds name.
//
// Every such POST is a delivery, stored in the outbox (store.Outbox)
// before it is sent, then claimed, sent and retried with backoff by
// whichever server gets to it first. So a build never waits for a forge,
// a forge that is down or rate-limits loses nothing, and deliveries
// survive a restart of the server.
//
//	build service ──Changed──────────► queue (memory, latest per build)
//	delivery service ─DeploymentChanged─┘
//	                               │ enqueue loop: statuses and events
//	                               ▼
//	                       store outbox (deliveries)
//	                               │ send loop, every server: claim, POST,
//	                               ▼ retry with backoff, hold on rate limits
//	                    forge API / hook URL / chat
//
// What it does not do: serve HTTP (the api package serves deliveries,
// hooks and badges), or keep any state of its own beyond the queue of
// changes not yet stored.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/issue"
	"github.com/gantry-ci/gantry/internal/store"
)

// Credentials returns the forge token of a repository (OWNER/NAME), or ""
// when it has none: then no commit status is posted for it. It is called
// off the build path, when statuses are queued and when each is sent; its
// errors must not contain the token.
type Credentials func(ctx context.Context, repo string) (string, error)

// Options configure a Notifier. Zero values take the defaults below.
type Options struct {
	// Name names this server to the others on one database: it claims
	// deliveries under it, and takes back at Start what it was sending
	// when it died. It must be unique among live servers and stay the
	// same across a restart.
	Name string
	// PublicURL is the server's URL as users reach it; build links are
	// PublicURL/builds/ID.
	PublicURL string
	// Credentials gives forge tokens; nil means no repo has one.
	Credentials Credentials
	// CredentialsHint tells a user how to give a repo credentials, in the
	// message recorded when it has none.
	CredentialsHint string
	// Reporters are the forge adapters by forge name.
	Reporters map[string]forge.Reporter
	Log       *slog.Logger
	// Client sends deliveries; its redirects are never followed.
	Client *http.Client
	// UserAgent is sent with every delivery.
	UserAgent string
	// MaxAttempts and MaxAge bound the retries of one delivery (20, 24h).
	MaxAttempts int
	MaxAge      time.Duration
	// Backoff is the wait before the first retry (10s); it doubles with
	// each attempt up to MaxBackoff (30m), with jitter.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Timeout bounds one POST (30s).
	Timeout time.Duration
	// Poll is how often a server looks for due deliveries when nothing
	// woke it (1s).
	Poll time.Duration
	// Concurrency is how many deliveries a server sends at once (4).
	Concurrency int
	// Retention is how long finished deliveries are kept (30 days).
	Retention time.Duration
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.MaxAge, 24*time.Hour)
	set(&o.Backoff, 10*time.Second)
	set(&o.MaxBackoff, 30*time.Minute)
	set(&o.Timeout, 30*time.Second)
	set(&o.Poll, time.Second)
	set(&o.Retention, 30*24*time.Hour)
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = o.Backoff
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 20
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Credentials == nil {
		o.Credentials = func(context.Context, string) (string, error) { return "", nil }
	}
	if o.UserAgent == "" {
		o.UserAgent = "Gantry"
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	// A POST that is redirected would be replayed as a GET without its
	// body: a redirect is an answer, and a failure.
	c := *o.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.Client = &c
	o.PublicURL = strings.TrimSuffix(o.PublicURL, "/")
}

// Notifier turns build changes into deliveries and sends them.
//
// Lifecycle: New, then Start; Changed may be called from the start (what
// it is given waits in memory); Stop stores what is still queued, lets the
// sends in flight finish until its ctx ends, and cancels the rest, which
// other servers (or this one, restarted) send again. Stop is safe twice.
type Notifier struct {
	st   store.Store
	opts Options

	mu      sync.Mutex
	seen    map[int64]seenBuild // last fingerprint per build, to skip no-op changes
	queue   []change            // changes not yet stored, oldest first
	warned  map[string]bool     // repos whose missing credentials were logged
	noticed map[string]bool     // notices stored, by dedupe key
	stopped bool

	enqueueWake chan struct{}
	sendWake    chan struct{}
	stopEnqueue chan struct{} // closed by Stop: the enqueue loop ends
	stopClaim   chan struct{} // closed by Stop: the send loop claims no more
	cancelSend  context.CancelFunc
	enqueuing   sync.WaitGroup // the enqueue loop
	claiming    sync.WaitGroup // the send loop
	inflight    sync.WaitGroup // sends, added to only by the send loop
	stopOnce    sync.Once
}

type seenBuild struct {
	fingerprint string
	finished    bool
}

// New returns a Notifier on st.
func New(st store.Store, opts Options) *Notifier {
	opts.defaults()
	return &Notifier{
		st: st, opts: opts,
		seen: map[int64]seenBuild{}, warned: map[string]bool{}, noticed: map[string]bool{},
		enqueueWake: make(chan struct{}, 1), sendWake: make(chan struct{}, 1),
		stopEnqueue: make(chan struct{}), stopClaim: make(chan struct{}),
	}
}

// BuildURL is the link to a build's page.
func (n *Notifier) BuildURL(id int64) string {
	return n.opts.PublicURL + "/builds/" + strconv.FormatInt(id, 10)
}

// Changed is the build service's callback: it notes that b changed and
// returns at once. It copies what it needs; the statuses and events it
// implies are stored by the enqueue loop, in the order of the changes.
func (n *Notifier) Changed(b *store.Build) {
	// A finished build that is changed again long after (a cancel of it
	// changes nothing) has been reported: its deliveries may even have
	// been pruned, and must not be sent twice.
	if store.Finished(b.Status) && !b.FinishedAt.IsZero() && time.Since(b.FinishedAt) > 24*time.Hour {
		return
	}
	fp := fingerprint(b)
	n.mu.Lock()
	if n.seen[b.ID].fingerprint == fp || n.stopped {
		n.mu.Unlock()
		return
	}
	_, known := n.seen[b.ID]
	n.seen[b.ID] = seenBuild{fp, store.Finished(b.Status)}
	if len(n.seen) > 4096 {
		for id, s := range n.seen {
			if s.finished {
				delete(n.seen, id)
			}
		}
	}
	n.queue = append(n.queue, change{b: snapshot(b), first: !known})
	if len(n.queue) > maxQueue {
		n.queue = latest(n.queue)
	}
	n.mu.Unlock()
	wake(n.enqueueWake)
}

// maxQueue bounds the changes waiting in memory (while the database is
// away). Past it, only the latest change of each build is kept: the
// statuses in between would be superseded, and every event is still
// implied by the latest change, though its payload shows the build as it
// is then.
const maxQueue = 10000

// change is a build as it was when it changed, or a deployment change
// (dep); first marks the first change of a build this server saw, whose
// issue keys it records.
type change struct {
	b     *store.Build
	first bool
	dep   *delivery.Change
}

// latest keeps the last change of each build in q, in order, and the
// newest maxQueue/2 deployment changes: each says something of its own,
// but a queue that the database cannot take must stay bounded.
func latest(q []change) []change {
	last, first := map[int64]int{}, map[int64]bool{}
	deps := 0
	for i, c := range q {
		if c.b != nil {
			last[c.b.ID] = i
			first[c.b.ID] = first[c.b.ID] || c.first
		} else {
			deps++
		}
	}
	var out []change
	for i, c := range q {
		switch {
		case c.dep != nil:
			if deps <= maxQueue/2 {
				out = append(out, c)
			}
			deps--
		case last[c.b.ID] == i:
			out = append(out, change{b: c.b, first: first[c.b.ID]})
		}
	}
	return out
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// fingerprint is what of a build its deliveries depend on.
func fingerprint(b *store.Build) string {
	var sb strings.Builder
	sb.WriteString(b.Status)
	if !b.StartedAt.IsZero() {
		sb.WriteString("+")
	}
	for _, j := range b.Jobs {
		sb.WriteString("|")
		sb.WriteString(j.Status)
	}
	return sb.String()
}

// snapshot copies a build without its pipeline and steps.
func snapshot(b *store.Build) *store.Build {
	c := *b
	c.Pipeline = nil
	c.Jobs = make([]*store.Job, len(b.Jobs))
	for i, j := range b.Jobs {
		cj := *j
		cj.Steps = nil
		c.Jobs[i] = &cj
	}
	return &c
}

// Start starts the enqueue and send loops. ctx is not kept; Stop ends
// them.
func (n *Notifier) Start(ctx context.Context) {
	if k, err := n.st.ReleaseDeliveries(ctx, n.opts.Name); err != nil {
		n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "take back deliveries", slog.Any("err", err))
	} else if k > 0 {
		n.opts.Log.LogAttrs(ctx, slog.LevelInfo, "deliveries interrupted by a restart are due again", slog.Int("count", k))
	}
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancelSend = cancel
	n.enqueuing.Add(1)
	go func() {
		defer n.enqueuing.Done()
		n.enqueueLoop()
	}()
	n.claiming.Add(1)
	go func() {
		defer n.claiming.Done()
		n.sendLoop(sendCtx)
	}()
}

// Stop stores the changes still queued, stops claiming deliveries, and
// lets the sends in flight finish until ctx ends; then it cancels them,
// and they are due again at once for the next server (or this one,
// restarted), like everything not sent yet.
func (n *Notifier) Stop(ctx context.Context) {
	n.stopOnce.Do(func() {
		if n.cancelSend == nil {
			return // never started
		}
		n.mu.Lock()
		n.stopped = true
		n.mu.Unlock()
		close(n.stopEnqueue)
		n.enqueuing.Wait()
		if err := n.enqueueBatch(ctx); err != nil {
			n.opts.Log.LogAttrs(ctx, slog.LevelError, "changes not stored at stop: their statuses and events are lost", slog.Any("err", err))
		}
		close(n.stopClaim)
		n.claiming.Wait() // no more sends start
		sent := make(chan struct{})
		go func() {
			n.inflight.Wait()
			close(sent)
		}()
		select {
		case <-sent:
		case <-ctx.Done():
		}
		n.cancelSend()
		n.inflight.Wait()
	})
}

// enqueueLoop stores queued changes as deliveries until Stop.
func (n *Notifier) enqueueLoop() {
	wait := 100 * time.Millisecond
	for {
		select {
		case <-n.stopEnqueue:
			return
		case <-n.enqueueWake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := n.enqueueBatch(ctx)
		cancel()
		if err == nil {
			wait = 100 * time.Millisecond
			continue
		}
		// The database is away: the changes went back to the queue; try
		// again, less and less often.
		n.opts.Log.LogAttrs(context.Background(), slog.LevelWarn, "queue deliveries", slog.Any("err", err))
		select {
		case <-n.stopEnqueue:
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
		wake(n.enqueueWake)
	}
}

// enqueueBatch stores the deliveries of every queued change in one
// transaction. On error the changes go back to the front of the queue.
func (n *Notifier) enqueueBatch(ctx context.Context) error {
	n.mu.Lock()
	batch := n.queue
	n.queue = nil
	n.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ds, err := n.deliveries(ctx, batch)
	if err == nil && len(ds) > 0 {
		err = n.st.EnqueueDeliveries(ctx, ds)
	}
	if err == nil {
		n.mu.Lock()
		for _, d := range ds {
			if d.State == store.DeliverySkipped {
				n.noticed[d.DedupeKey] = true
			}
		}
		n.mu.Unlock()
		n.linkIssues(ctx, batch)
	}
	if err != nil {
		n.mu.Lock()
		n.queue = append(batch, n.queue...)
		if len(n.queue) > maxQueue {
			n.queue = latest(n.queue)
		}
		n.mu.Unlock()
		return err
	}
	wake(n.sendWake)
	return nil
}

// deliveries are what a batch of changes owes: commit statuses for the
// builds' forges, GitHub deployment statuses for the deployments, and
// events for the hooks that subscribe to them.
func (n *Notifier) deliveries(ctx context.Context, batch []change) ([]*store.Delivery, error) {
	hooks, err := n.st.Hooks(ctx)
	if err != nil {
		return nil, err
	}
	repos := map[string]*store.Repo{}
	var out []*store.Delivery
	for _, c := range batch {
		if c.dep != nil {
			ds, err := n.deploymentDeliveries(ctx, *c.dep, hooks)
			if err != nil {
				return nil, err
			}
			out = append(out, ds...)
			continue
		}
		b := c.b
		repo, ok := repos[b.Repo]
		if !ok {
			repo, err = n.st.Repo(ctx, b.Repo)
			if errors.Is(err, store.ErrNotFound) {
				continue // removed since
			}
			if err != nil {
				return nil, err
			}
			repos[b.Repo] = repo
		}
		out = append(out, n.statuses(ctx, repo, b)...)
		hs, err := n.events(ctx, repo, b, hooks)
		if err != nil {
			return nil, err
		}
		out = append(out, hs...)
	}
	return out, nil
}

// linkIssues records the issue keys the branch, title and commit
// message of each build first seen name. A failure is logged: the links
// are an index, not a promise.
func (n *Notifier) linkIssues(ctx context.Context, batch []change) {
	for _, c := range batch {
		if !c.first || c.b == nil {
			continue
		}
		keys := issue.Keys(c.b.Branch, c.b.Title, c.b.Message)
		if len(keys) == 0 {
			continue
		}
		if err := n.st.LinkIssues(ctx, c.b.ID, keys); err != nil && !errors.Is(err, store.ErrNotFound) {
			n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "link issues", slog.Int64("build", c.b.ID), slog.Any("err", err))
		}
	}
}

// notice is a skipped delivery recorded once per repo and reason, to say
// in `gantry deliveries` why nothing is sent; it is logged once per
// server.
func (n *Notifier) notice(ctx context.Context, repo *store.Repo, key, event, why string) []*store.Delivery {
	dedupe := fmt.Sprintf("%s:%d", key, repo.ID)
	n.mu.Lock()
	first, stored := !n.warned[dedupe], n.noticed[dedupe]
	n.warned[dedupe] = true
	n.mu.Unlock()
	if first {
		n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "commit statuses not posted", slog.String("repo", repo.Name), slog.String("reason", why))
	}
	if stored {
		return nil
	}
	return []*store.Delivery{{Kind: store.DeliveryStatus, RepoID: repo.ID, Forge: repo.Forge, Event: event,
		State: store.DeliverySkipped, LastError: why, DedupeKey: dedupe, Payload: []byte{}}}
}
