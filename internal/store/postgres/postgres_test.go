package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/postgres"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
	"github.com/gantry-ci/gantry/internal/store/storetest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func open(t testing.TB, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, pgtest.URL(t))
	})
}

// query runs sql on the database at url, outside any Store, and returns
// the first column of each row as text.
func query(t *testing.T, url, sql string, args ...any) []string {
	t.Helper()
	// A pool, which understands the URL's pool_max_conns.
	c, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rows, err := c.Query(t.Context(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// migrations lists schema_migrations.
func migrations(t *testing.T, url string) []string {
	t.Helper()
	return query(t, url, "SELECT version || ' ' || name || ' ' || applied_at FROM schema_migrations ORDER BY version")
}

// TestReopen closes a store and opens the database again, as a restarted
// server does: nothing is migrated twice, and build numbers and lease
// tokens go on from where they were.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	s := open(t, url)
	r := &store.Repo{Name: "acme/app", CloneURL: "https://example.com/acme/app.git"}
	if err := s.CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued}}}
	if err := s.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	_, j, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	applied := migrations(t, url)
	if len(applied) == 0 {
		t.Fatal("no migrations recorded")
	}

	s2 := open(t, url)
	if got := migrations(t, url); !slices.Equal(got, applied) {
		t.Errorf("reopening changed schema_migrations from %q to %q", applied, got)
	}
	got, err := s2.Build(ctx, b.ID)
	if err != nil {
		t.Fatalf("Build(%d) after reopening = %v", b.ID, err)
	}
	if got.Repo != r.Name || got.Number != 1 || got.Jobs[0].Status != store.StatusRunning {
		t.Errorf("Build(%d) after reopening = %s #%d job %s, want acme/app #1 job running", b.ID, got.Repo, got.Number, got.Jobs[0].Status)
	}
	b2 := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued}}}
	if err := s2.CreateBuild(ctx, b2); err != nil {
		t.Fatal(err)
	}
	_, j2, err := s2.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b2.Number != 2 || j2.LeaseToken <= j.LeaseToken {
		t.Errorf("after reopening: build number %d and token %d after %d; want 2 and a higher token", b2.Number, j2.LeaseToken, j.LeaseToken)
	}
}

// TestConcurrentOpen starts several servers on one empty database at once:
// the migrations are applied once, and every Open succeeds.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), url)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open() #%d of %d at once = %v", i, n, err)
		}
	}
	applied := query(t, url, "SELECT name FROM schema_migrations ORDER BY version")
	if len(applied) == 0 || applied[0] != "0001_init.sql" || len(slices.Compact(slices.Clone(applied))) != len(applied) {
		t.Errorf("schema_migrations after %d concurrent Opens = %q, want each migration once", n, applied)
	}
	// The lock was let go: one more Open does not wait for it.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open() after the others = %v", err)
	}
	s.Close()
}

// TestTwoServersLease is two servers over one database, each with many
// agents leasing at once: every one of 2,000 queued jobs is leased exactly
// once, with a token of its own.
func TestTwoServersLease(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	servers := []*postgres.Store{open(t, url), open(t, url)}
	r := &store.Repo{Name: "acme/app"}
	if err := servers[0].CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	const builds, jobsPerBuild = 200, 10
	want := map[int64]bool{}
	for i := range builds {
		b := &store.Build{RepoID: r.ID, Status: store.StatusQueued}
		for p := range jobsPerBuild {
			b.Jobs = append(b.Jobs, &store.Job{Name: fmt.Sprint("job", p), Position: p, Status: store.StatusQueued,
				RunsOn: []string{"linux"}, QueuedAt: time.Now()})
		}
		if err := servers[i%2].CreateBuild(ctx, b); err != nil {
			t.Fatal(err)
		}
		for _, j := range b.Jobs {
			want[j.ID] = true
		}
	}

	const agentsPerServer = 12
	var (
		mu     sync.Mutex
		got    = map[int64][]string{}
		tokens = map[int64]int64{}
		wg     sync.WaitGroup
	)
	for si, s := range servers {
		for a := range agentsPerServer {
			agent := fmt.Sprintf("server%d-agent%d", si, a)
			wg.Go(func() {
				for {
					_, j, err := s.Lease(ctx, agent, []string{"linux", "amd64"}, time.Hour)
					if errors.Is(err, store.ErrNotFound) {
						return
					}
					if err != nil {
						t.Errorf("Lease() = %v", err)
						return
					}
					mu.Lock()
					got[j.ID] = append(got[j.ID], agent)
					if other, ok := tokens[j.LeaseToken]; ok {
						t.Errorf("token %d handed out for job %d and job %d", j.LeaseToken, other, j.ID)
					}
					tokens[j.LeaseToken] = j.ID
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	// A Lease that skipped the jobs others held may have given up before
	// they were all taken; none may be left now.
	for _, s := range servers {
		if _, j, err := s.Lease(ctx, "late", []string{"linux"}, time.Hour); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Lease() after every agent stopped = job %v, %v; want ErrNotFound", j, err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d agents on 2 servers leased %d distinct jobs, want %d", 2*agentsPerServer, len(got), len(want))
	}
	for id, agents := range got {
		if !want[id] || len(agents) != 1 {
			t.Errorf("job %d leased to %v, want exactly one agent", id, agents)
		}
	}
	running := query(t, url, "SELECT count(DISTINCT lease_token)::text FROM jobs WHERE status = 'running' AND attempt = 1")
	if running[0] != fmt.Sprint(len(want)) {
		t.Errorf("%s jobs stored running with distinct tokens, want %d", running[0], len(want))
	}
}

// TestTwoServersCreateBuild creates builds of one repo from two servers at
// once: their numbers run 1..n without gaps or duplicates, and one
// delivery ID sent to both makes one build.
func TestTwoServersCreateBuild(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	servers := []*postgres.Store{open(t, url), open(t, url)}
	r := &store.Repo{Name: "acme/app"}
	if err := servers[0].CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var wg sync.WaitGroup
	numbers := make([]int64, n)
	ids := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			b := &store.Build{RepoID: r.ID, Status: store.StatusQueued,
				Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued}}}
			if i%10 == 0 {
				b.DeliveryID = "the-same-delivery"
			}
			errs[i] = servers[i%2].CreateBuild(ctx, b)
			numbers[i], ids[i] = b.Number, b.ID
		})
	}
	wg.Wait()
	var created []int64
	var winner int64
	for i, err := range errs {
		switch {
		case err == nil:
			created = append(created, numbers[i])
			if i%10 == 0 {
				winner = ids[i]
			}
		case i%10 == 0 && errors.Is(err, store.ErrConflict):
		default:
			t.Errorf("CreateBuild #%d = %v", i, err)
		}
	}
	for i := 0; i < n; i += 10 {
		if ids[i] != winner {
			t.Errorf("CreateBuild #%d with the shared delivery set ID %d, want the created build's %d", i, ids[i], winner)
		}
	}
	slices.Sort(created)
	if len(created) != n-9 {
		t.Fatalf("%d builds created, want %d (one of the 10 with the same delivery)", len(created), n-9)
	}
	for i, num := range created {
		if num != int64(i+1) {
			t.Fatalf("numbers of concurrent builds from two servers = %v, want 1..%d", created, n-9)
		}
	}
}

// TestLeaseSkipsLockedBuild: while an Update holds a build, a Lease on
// another server does not wait for it; it leases another job, or none.
func TestLeaseSkipsLockedBuild(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	r := &store.Repo{Name: "acme/app"}
	if err := a.CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	held := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Jobs: []*store.Job{{Name: "held", Status: store.StatusQueued}}}
	free := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Jobs: []*store.Job{{Name: "free", Status: store.StatusQueued}}}
	for _, bd := range []*store.Build{held, free} {
		if err := a.CreateBuild(ctx, bd); err != nil {
			t.Fatal(err)
		}
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- a.Update(ctx, held.ID, func(*store.Build) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, j, err := b.Lease(short, "agent", nil, time.Hour); err != nil || j.Name != "free" {
		t.Errorf("Lease() while the older job's build is held = %v, %v; want the free job at once", j, err)
	}
	if _, _, err := b.Lease(short, "agent", nil, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lease() with only a held job left = %v, want ErrNotFound at once", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Update() = %v", err)
	}
	if _, j, err := b.Lease(short, "agent", nil, time.Hour); err != nil || j.Name != "held" {
		t.Errorf("Lease() once the Update ended = %v, %v; want the held job", j, err)
	}
}

// TestUpdatePanics: a panic in fn rolls the transaction back, so the
// build's locks are let go and its connection is not left inside it.
func TestUpdatePanics(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, pgtest.URL(t))
	r := &store.Repo{Name: "acme/app"}
	if err := s.CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued}}}
	if err := s.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Update(fn panics) did not panic")
			}
		}()
		s.Update(ctx, b.ID, func(b *store.Build) error {
			b.Reason = "half done"
			panic("boom")
		})
	}()
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Update(short, b.ID, func(b *store.Build) error { b.Reason = "after"; return nil }); err != nil {
		t.Fatalf("Update() after a panic in another = %v", err)
	}
	if _, j, err := s.Lease(short, "agent", nil, time.Hour); err != nil || j.BuildID != b.ID {
		t.Errorf("Lease() after a panic in Update = %v, %v; want the build's job", j, err)
	}
	if got, err := s.Build(ctx, b.ID); err != nil || got.Reason != "after" {
		t.Errorf("Build() = %v, %v; want the second Update's reason", got, err)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	open(t, url).Close()
	query(t, url, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', now()) RETURNING name")
	if s, err := postgres.Open(t.Context(), url); err == nil {
		s.Close()
		t.Errorf("Open() of a database from a newer binary = nil error, want one")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open() of a database from a newer binary = %v, want it to say so", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, "postgres://gantry:hunter2@127.0.0.1:1/gantry?connect_timeout=5")
	if err == nil {
		s.Close()
		t.Fatal("Open() of a server that is not there = nil error")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open() error %q shows the password", err)
	}
}

// TestErrorsWrapOperation: errors name the operation and the sentinel, and
// none of the server's text, whose detail would quote a token's hash.
func TestErrorsWrapOperation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, pgtest.URL(t))
	_, err := s.Repo(ctx, "acme/none")
	if !errors.Is(err, store.ErrNotFound) || err.Error() != `repo "acme/none": not found` {
		t.Errorf("Repo(missing) = %q, want %q wrapping ErrNotFound", err, `repo "acme/none": not found`)
	}
	hash := []byte("secret-digest")
	if err := s.CreateToken(ctx, &store.Token{Name: "a", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	err = s.CreateToken(ctx, &store.Token{Name: "b", Hash: hash})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateToken(same hash) = %v, want ErrConflict", err)
	}
	if msg := err.Error(); strings.Contains(msg, "secret") || strings.Contains(msg, "duplicate key") {
		t.Errorf("CreateToken(same hash) = %q, want no value and no server text", msg)
	}
}
