package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/server"
)

const serverAbout = `Starts the Gantry server: forge webhooks in at /hooks/{github,gitea,gitlab,
bitbucket}, builds out, the web UI at / (sign in with an API token), the API
at /api/v1, /healthz and /metrics. State lives
in an embedded SQLite database under --data, or in PostgreSQL with --database
postgres://USER:PASSWORD@HOST/DB; jobs run on a built-in agent with --agents
slots.

On first start (no user yet) it creates the user admin with an API token
that never expires: GANTRY_ADMIN_TOKEN if set, otherwise a generated one,
printed once. Only its hash is stored. Add more people with 'gantry user add'.

SIGTERM or Ctrl-C drains: no new job starts, running jobs may finish for
--drain-timeout, then they are stopped. A second signal stops them at once.
After a crash (kill -9), the next start ends the jobs that were running as
error "server restarted"; queued builds still run.

Pull requests from forks are recorded as skipped unless --build-forks is
given: the built-in agent runs steps on this host as this user. Built, they
receive no secrets.

Secrets are encrypted with the keys of GANTRY_SECRET_KEY (base64 of 32 random
bytes, several comma-separated, newest first: openssl rand -base64 32) or,
when it is not set, of the key file DATA/secret.key, created with mode 0600 on
first start. The server refuses to start when that file may be read by other
users. Back the key up apart from the database: without it the secrets
cannot be read. Several servers over one database need the same
GANTRY_SECRET_KEY. See docs/secrets.md.

Commit statuses go to each repo's forge, linking to --public-url/builds/ID,
with the token in the repo's secret FORGE_TOKEN (gantry secret set
OWNER/NAME FORGE_TOKEN); without it, none are posted for that repo.
Statuses and hook events are stored before they are sent and retried with
backoff (--delivery-attempts, --delivery-backoff); 'gantry deliveries' shows
how each went.

Artifacts live under --data/artifacts, one file per SHA-256. Those no
release refers to are removed after --artifact-retention; a release's are
kept for good.`

func serverCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("server", "server [flags]", serverAbout, stdout, stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen on `HOST:PORT`")
	data := fs.String("data", "gantry-data", "data `dir`: database, repo caches, workspaces")
	database := fs.String("database", "", "database `URL`: sqlite:PATH (default sqlite:DATA/gantry.db) or postgres://USER:PASSWORD@HOST/DB")
	agents := fs.Int("agents", runtime.NumCPU(), "built-in agent slots: jobs run at once on this machine (`N`; 0: none)")
	drain := fs.Duration("drain-timeout", time.Minute, "on SIGTERM, how long running jobs may finish before they are stopped")
	leaseTTL := fs.Duration("lease-ttl", 30*time.Second, "a job whose agent stops heartbeating for this long is handed to another agent or fails")
	retries := fs.Int("retries", 1, "how many times a job whose agent was lost (or whose token was revoked) runs again elsewhere before it fails as \"agent lost\" (`N`)")
	buildForks := fs.Bool("build-forks", false, "build pull requests from forks: their pipeline, a stranger's code, runs on this server's agents")
	publicURL := fs.String("public-url", "", "the server's `URL` as users reach it, for build links in commit statuses and events (default http://ADDR)")
	deliveryAttempts := fs.Int("delivery-attempts", 20, "give up a commit status or hook delivery after `N` attempts")
	deliveryBackoff := fs.Duration("delivery-backoff", 10*time.Second, "wait before retrying a failed delivery; doubles with each attempt, up to 30m")
	maxArtifact := fs.Int64("artifact-max-size", api.DefaultMaxArtifactSize>>20, "the most `MiB` one artifact may have; a bigger upload fails its job")
	retention := fs.String("artifact-retention", "30d", "keep artifacts no release refers to this long: days (`30d`), a duration (12h), or never")
	logFormat := fs.String("log-format", "text", "log `format` on stderr: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gantry server: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *retries < 0 {
		fmt.Fprintf(stderr, "gantry server: --retries %d: want 0 or more\n", *retries)
		return exitUsage
	}
	if *deliveryAttempts < 1 {
		fmt.Fprintf(stderr, "gantry server: --delivery-attempts %d: want 1 or more\n", *deliveryAttempts)
		return exitUsage
	}
	if *deliveryBackoff <= 0 {
		fmt.Fprintf(stderr, "gantry server: --delivery-backoff %s: want more than 0\n", *deliveryBackoff)
		return exitUsage
	}
	if u, err := url.Parse(*publicURL); *publicURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		fmt.Fprintf(stderr, "gantry server: --public-url %q: want http://HOST[:PORT] or https://...\n", *publicURL)
		return exitUsage
	}
	if *maxArtifact < 1 || *maxArtifact > 1<<30 {
		fmt.Fprintf(stderr, "gantry server: --artifact-max-size %d: want a number of MiB from 1\n", *maxArtifact)
		return exitUsage
	}
	keep, err := parseRetention(*retention)
	if err != nil {
		fmt.Fprintf(stderr, "gantry server: --artifact-retention %v\n", err)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "gantry server: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return exitUsage
	}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	case "json":
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		fmt.Fprintf(stderr, "gantry server: --log-format %q: want text or json\n", *logFormat)
		return exitUsage
	}
	log := slog.New(handler)

	srv, err := server.New(server.Config{
		Addr: *addr, DataDir: *data, Database: *database, Agents: *agents,
		AdminToken: os.Getenv("GANTRY_ADMIN_TOKEN"), LeaseTTL: *leaseTTL, Retries: *retries, BuildForks: *buildForks,
		Log: log, Out: stdout, Version: version(), SecretKey: os.Getenv("GANTRY_SECRET_KEY"), ArtifactRetention: keep, MaxArtifactSize: *maxArtifact << 20,
		Notify: notify.Options{PublicURL: *publicURL, MaxAttempts: *deliveryAttempts, Backoff: *deliveryBackoff},
	})
	if err != nil {
		fmt.Fprintf(stderr, "gantry server: %v\n", err)
		return exitUsage
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := srv.Start(context.Background()); err != nil {
		fmt.Fprintf(stderr, "gantry server: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "gantry server listening on http://%s\n", srv.Addr())
	<-sigs
	log.Info("stopping: draining running jobs", "timeout", drain.String())
	ctx, cancel := context.WithTimeout(context.Background(), *drain)
	go func() {
		<-sigs
		log.Warn("second signal: stopping running jobs now")
		cancel()
	}()
	err = srv.Stop(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "gantry server: stop: %v\n", err)
		return exitFailed
	}
	return exitOK
}
