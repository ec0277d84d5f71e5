// Package server assembles the Gantry server: the store, the build service,
// the dispatcher, the built-in agent, and the HTTP faces (API, web UI,
// webhooks, health and metrics). It decides nothing itself; it wires,
// starts and stops.
//
// Lifecycle:
//
//	New ──► Start ──► (serving) ──► Stop: drain (no new leases; running jobs
//	                                      finish, bounded by Stop's ctx)
//	                                      then cancel what still runs, close.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gantry-ci/gantry/internal/agent"
	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/artifact"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/bitbucket"
	"github.com/gantry-ci/gantry/internal/forge/gitea"
	"github.com/gantry-ci/gantry/internal/forge/github"
	"github.com/gantry-ci/gantry/internal/forge/gitlab"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/hook"
	"github.com/gantry-ci/gantry/internal/logstream"
	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/web"
)

// Config is what `gantry server` is started with.
type Config struct {
	// Addr is where the HTTP server listens; default 127.0.0.1:8080.
	Addr string
	// DataDir holds the database, repo mirrors and job workspaces.
	DataDir string
	// Database is a URL: sqlite:PATH (default DataDir/gantry.db), or
	// postgres://... for a PostgreSQL database several servers may share.
	Database string
	// Agents is the number of built-in agent slots; 0 runs none.
	Agents int
	// AdminToken, when set, is the admin API token created on first start;
	// otherwise one is generated and printed once to Out.
	AdminToken string
	// LeaseTTL is how long a job's lease lasts without a heartbeat.
	LeaseTTL time.Duration
	// Retries is how many times a job whose agent was lost is handed to
	// another agent before it fails with "agent lost".
	Retries int
	// KillGrace is how long a stopped step gets between SIGTERM and SIGKILL.
	KillGrace time.Duration
	// BuildForks builds pull requests from forks; their pipeline is a
	// stranger's code running on this server's agents.
	BuildForks bool
	Log        *slog.Logger
	// Out receives the one-time admin token message.
	Out io.Writer
	// Version is the server's version, reported by its built-in agent.
	Version string
	// LongPoll is how long an idle agent's request for work is held
	// before the answer "nothing yet"; 0 means queue.LongPoll.
	LongPoll time.Duration
	// SecretKey is GANTRY_SECRET_KEY: the keys secrets are encrypted
	// with, base64, comma-separated, newest first. Empty: the key file
	// DataDir/secret.key, created on first start.
	SecretKey string
	// Notify configures commit statuses and hooks (see notify.Options).
	// Its PublicURL defaults to http://Addr; the store, reporters, log
	// and user agent are filled in.
	Notify notify.Options
	// ArtifactRetention is how long artifacts no release refers to are
	// kept; 0 keeps them for ever.
	ArtifactRetention time.Duration
	// MaxArtifactSize is the most bytes one artifact may have; 0 means
	// api.DefaultMaxArtifactSize.
	MaxArtifactSize int64
}

// Server is a running Gantry server.
type Server struct {
	cfg        Config
	store      store.Store
	builds     *build.Service
	dispatcher *queue.Dispatcher
	delivery   *delivery.Service
	artifacts  *artifact.Store
	broker     *logstream.Broker
	metrics    *metrics
	notifier   *notify.Notifier
	http       *http.Server
	listener   net.Listener

	cancelLeases context.CancelFunc // stops leasing (drain)
	cancelJobs   context.CancelFunc // stops running jobs
	cancelBg     context.CancelFunc
	agents       sync.WaitGroup // the built-in agent
	bg           sync.WaitGroup // the dispatcher and the HTTP server
	stopOnce     sync.Once
	lock         *os.File // flock of the data dir
	stopErr      error
	keys         *secret.Keyring // from SecretKey; nil until Start for a key file
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "gantry-data"
	}
	if cfg.Agents < 0 {
		return nil, fmt.Errorf("agents: %d is negative", cfg.Agents)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.LeaseTTL < time.Second {
		return nil, fmt.Errorf("lease TTL %s: want at least 1s", cfg.LeaseTTL)
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	keys, err := parseSecretKey(cfg.SecretKey)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, keys: keys}, nil
}

// Addr is the address the server listens on, once started.
func (s *Server) Addr() string {
	if s.listener == nil {
		return s.cfg.Addr
	}
	return s.listener.Addr().String()
}

// Start opens the store, puts every build back into a true state, creates
// the admin token on first start, and starts the dispatcher, the built-in
// agent and the HTTP server.
func (s *Server) Start(ctx context.Context) (err error) {
	// The data dir holds webhook secrets: only this user may read it.
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// One server per data dir: a second one would "recover" the first's
	// running jobs and kill its step processes.
	lock, err := os.OpenFile(filepath.Join(s.cfg.DataDir, "gantry.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return fmt.Errorf("data dir %s is in use by another gantry server (%v)", s.cfg.DataDir, err)
	}
	s.lock = lock
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	keys, err := s.openKeyring(ctx)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	st, err := s.openStore(ctx)
	if err != nil {
		return err
	}
	s.store = st
	s.broker = &logstream.Broker{}
	s.metrics = newMetrics(st)
	mirrors := git.NewMirrors(filepath.Join(s.cfg.DataDir, "repos"))
	vault := s.startVault(ctx, st, keys)
	s.notifier = s.newNotifier(st, ln.Addr().(*net.TCPAddr), vault)
	if s.artifacts, err = artifact.New(filepath.Join(s.cfg.DataDir, "artifacts")); err != nil {
		st.Close()
		return err
	}
	var dispatcher *queue.Dispatcher
	changed := func(b *store.Build) {
		s.broker.Publish(logstream.Message{Kind: "build", BuildID: b.ID, Snapshot: api.BuildOf(b)})
		s.notifier.Changed(b) // queues, never waits
		if dispatcher != nil && hasQueued(b) {
			dispatcher.Notify()
		}
	}
	s.delivery = delivery.New(st, mirrors, s.cfg.Log, changed)
	// Every change of a deployment becomes its hook events, chat messages
	// and GitHub deployment statuses; the notifier only queues it.
	s.delivery.Observe(s.notifier.DeploymentChanged)
	s.builds = build.New(st, mirrors, s.cfg.Log, changed, build.Options{BuildForks: s.cfg.BuildForks,
		Finished: func(b *store.Build) {
			s.metrics.buildFinished(b)
			s.delivery.BuildFinished(b)
		}})
	dispatcher = queue.New(st, s.builds, s.cfg.Log, queue.Options{LeaseTTL: s.cfg.LeaseTTL, Retries: s.cfg.Retries,
		Artifacts: s.artifacts,
		Logged: func(buildID, jobID int64) {
			s.broker.Publish(logstream.Message{Kind: "log", BuildID: buildID, JobID: jobID})
		}, Secrets: vault.ValuesIn})
	s.dispatcher = dispatcher

	// The built-in agent's name is this server's own: on restart it finds
	// the jobs that died with it, and leaves those of other agents (and of
	// other servers on the same database) alone.
	host, _ := os.Hostname()
	builtin := "builtin@" + host + ":" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if err := s.builds.Recover(ctx, builtin); err != nil {
		st.Close()
		return err
	}
	if err := s.bootstrapToken(ctx); err != nil {
		st.Close()
		return err
	}

	s.listener = ln

	bg, cancelBg := context.WithCancel(context.Background())
	s.cancelBg = cancelBg
	s.notifier.Start(bg)
	s.bg.Add(4)
	go func() {
		defer s.bg.Done()
		dispatcher.Run(bg)
	}()
	go func() {
		defer s.bg.Done()
		s.delivery.Run(bg, 5*time.Second)
	}()
	go func() {
		defer s.bg.Done()
		s.sweepArtifacts(bg)
	}()
	go func() {
		defer s.bg.Done()
		s.schedule(bg)
	}()

	if s.cfg.Agents > 0 {
		leaseCtx, cancelLeases := context.WithCancel(context.Background())
		jobCtx, cancelJobs := context.WithCancel(context.Background())
		s.cancelLeases, s.cancelJobs = cancelLeases, cancelJobs
		machine := agent.NewMachine(ctx, builtin, filepath.Join(s.cfg.DataDir, "work"), s.cfg.KillGrace, s.cfg.Log)
		a := agent.New(dispatcher, machine.Backend, mirrors, s.cfg.Log, agent.Options{
			Name:     builtin,
			Version:  s.cfg.Version,
			Labels:   append([]string{runtime.GOOS, runtime.GOARCH, "builtin"}, machine.Labels...),
			Capacity: s.cfg.Agents,
			WorkDir:  filepath.Join(s.cfg.DataDir, "work"),
			// Output goes to the store in-process, not over HTTP: a short
			// flush puts a printed line on the build page within 200ms.
			FlushInterval: 50 * time.Millisecond,
		})
		s.agents.Add(1)
		go func() {
			defer s.agents.Done()
			// The dispatcher never refuses its own agent.
			_ = a.Run(leaseCtx, jobCtx)
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			machine.Close(cctx)
		}()
	}

	mux := http.NewServeMux()
	apiHandler := &api.Handler{Store: st, Builds: s.builds, Mirrors: mirrors, Broker: s.broker, Log: s.cfg.Log,
		Queue: dispatcher, LongPoll: s.cfg.LongPoll, Secrets: vault, Delivery: s.delivery, Artifacts: s.artifacts,
		MaxArtifactSize: s.cfg.MaxArtifactSize}
	apiHandler.Register(mux)
	(&web.Handler{API: apiHandler, Store: st, Builds: s.builds, Queue: dispatcher, Broker: s.broker, Log: s.cfg.Log}).Register(mux)
	(&hook.Handler{Store: st, Builds: s.builds, Log: s.cfg.Log, Count: s.metrics.webhook,
		Webhooks: map[string]forge.Webhook{
			"github": github.Webhook(), "gitea": gitea.Webhook(), "forgejo": gitea.Webhook(),
			"gitlab": gitlab.Webhook(), "bitbucket": bitbucket.Webhook(),
		}}).Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /metrics", s.metrics.serve)
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		// No WriteTimeout: log and event streams last as long as a build.
		ErrorLog: slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn),
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.LogAttrs(context.Background(), slog.LevelError, "http server", slog.Any("err", err))
		}
	}()
	s.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "gantry server started", slog.String("addr", ln.Addr().String()),
		slog.String("data", s.cfg.DataDir), slog.Int("agents", s.cfg.Agents))
	return nil
}

// schedule starts the builds of `on: schedule` crons, looking once a
// minute, just after the minute turns. Firings missed while the server was
// down are not made up.
func (s *Server) schedule(ctx context.Context) {
	last := time.Now()
	for {
		next := last.Truncate(time.Minute).Add(time.Minute + time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		now := time.Now()
		if err := s.builds.Scheduled(ctx, last, now); err != nil && ctx.Err() == nil {
			s.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "scheduled builds", slog.Any("err", err))
		}
		last = now
	}
}

// bootstrapToken creates the user "admin" with an API token that never
// expires when there is no user at all.
func (s *Server) bootstrapToken(ctx context.Context) error {
	users, err := s.store.Users(ctx)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return nil
	}
	secret := s.cfg.AdminToken
	generated := secret == ""
	if generated {
		secret = api.NewSecret("gantry_")
	}
	u := &store.User{Name: "admin", Admin: true}
	if err := s.store.CreateUser(ctx, u); errors.Is(err, store.ErrConflict) {
		return nil // another server on the same database was first
	} else if err != nil {
		return fmt.Errorf("create admin user: %w", err)
	}
	if err := s.store.CreateToken(ctx, &store.Token{Name: "admin", Hash: api.HashToken(secret), Admin: true, UserID: u.ID}); err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	if generated {
		fmt.Fprintf(s.cfg.Out, "Created the user admin with an API token. It is shown only this once; store it now:\n\n    %s\n\n", secret)
	}
	return nil
}

// Stop drains, then cancels, then closes: no new job is leased, running jobs
// may finish until ctx ends, then they are stopped and recorded as such. It
// is safe to call more than once.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		if s.http == nil {
			return // never started
		}
		// Drain: no new leases; running jobs finish until ctx ends.
		if s.cancelLeases != nil {
			s.cancelLeases()
			drained := make(chan struct{})
			go func() {
				s.agents.Wait()
				close(drained)
			}()
			select {
			case <-drained:
			case <-ctx.Done():
				s.cfg.Log.LogAttrs(context.Background(), slog.LevelWarn, "drain timed out; cancelling running jobs")
				s.cancelJobs()
				<-drained
			}
			s.cancelJobs()
		}
		// Then the HTTP server: requests in flight get a moment, streams
		// (logs, events) are cut.
		hctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.http.Shutdown(hctx)
		cancel()
		s.http.Close()
		s.cancelBg()
		s.bg.Wait()
		// After the drain, so the last statuses are stored; what is not
		// sent by then is sent after the restart, or by another server.
		nctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.notifier.Stop(nctx)
		cancel()
		s.stopErr = s.store.Close()
		s.lock.Close()
	})
	return s.stopErr
}

// hasQueued reports whether a build has a job an agent may lease, or one
// that finished (a unit of its locks came free): then idle agents look.
func hasQueued(b *store.Build) bool {
	for _, j := range b.Jobs {
		if j.Status == store.StatusQueued || (store.Finished(j.Status) && len(j.Locks) > 0) {
			return true
		}
	}
	return false
}
