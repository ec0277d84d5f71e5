package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
	"github.com/gantry-ci/gantry/internal/store/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "gantry.db"))
	})
}

// migrations reads the schema_migrations table directly.
func migrations(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT version || ' ' || name || ' ' || applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gantry.db")
	s := open(t, path)
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
	applied := migrations(t, path)
	if len(applied) == 0 {
		t.Fatal("no migrations recorded")
	}

	s2 := open(t, path)
	if got := migrations(t, path); len(got) != len(applied) || got[0] != applied[0] {
		t.Errorf("reopening changed schema_migrations from %q to %q", applied, got)
	}
	got, err := s2.Build(ctx, b.ID)
	if err != nil {
		t.Fatalf("Build(%d) after reopening = %v", b.ID, err)
	}
	if got.Repo != r.Name || got.Number != 1 || got.Jobs[0].Status != store.StatusRunning {
		t.Errorf("Build(%d) after reopening = %s #%d job %s, want acme/app #1 job running", b.ID, got.Repo, got.Number, got.Jobs[0].Status)
	}
	// The counters survive too: numbers and tokens go on from where they were.
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

// TestSecondStore opens a second Store on a file a first one is still
// using, as a server restarted while the old process has not let go yet
// would: what the first wrote and committed is there, without a clean
// shutdown of the first, and both can write.
func TestSecondStore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gantry.db")
	first := open(t, path)
	r := &store.Repo{Name: "acme/app"}
	if err := first.CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued}}}
	if err := first.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	_, j, err := first.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{{Data: []byte("before the crash\n")}}); err != nil {
		t.Fatal(err)
	}

	second := open(t, path)
	got, err := second.Build(ctx, b.ID)
	if err != nil {
		t.Fatalf("second store: Build(%d) = %v", b.ID, err)
	}
	if got.Jobs[0].LeaseToken != j.LeaseToken {
		t.Errorf("second store sees token %d, want %d", got.Jobs[0].LeaseToken, j.LeaseToken)
	}
	logs, err := second.Logs(ctx, j.ID, 0, 0)
	if err != nil || len(logs) != 1 || string(logs[0].Data) != "before the crash\n" {
		t.Errorf("second store: Logs() = %v, %v; want the line written before", logs, err)
	}
	// Both write; busy_timeout settles the file lock between them.
	errc := make(chan error, 2)
	for _, s := range []*sqlite.Store{first, second} {
		go func() {
			var err error
			for range 20 {
				if err = s.CreateBuild(ctx, &store.Build{RepoID: r.ID, Status: store.StatusQueued}); err != nil {
					break
				}
			}
			errc <- err
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("CreateBuild from two stores = %v", err)
		}
	}
	builds, err := first.Builds(ctx, store.BuildFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(builds) != 41 || builds[0].Number != 41 {
		t.Errorf("after 40 builds from two stores: %d builds, newest #%d; want 41", len(builds), builds[0].Number)
	}
}

func TestOpenRefusesNonFiles(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", ":memory:", "file:x.db?mode=memory", "x.db?_pragma=foo"} {
		if s, err := sqlite.Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) = nil error, want one", path)
		}
	}
}

func TestOpenNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "gantry.db")
	open(t, path).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := sqlite.Open(t.Context(), path); err == nil {
		s.Close()
		t.Errorf("Open() of a database from a newer binary = nil error, want one")
	}
}

func TestErrorsWrapOperation(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "gantry.db"))
	_, err := s.Repo(t.Context(), "acme/none")
	if !errors.Is(err, store.ErrNotFound) || err.Error() != `repo "acme/none": not found` {
		t.Errorf("Repo(missing) = %q, want %q wrapping ErrNotFound", err, `repo "acme/none": not found`)
	}
}

// TestWritesAreSerialized shows the write design: while one write
// transaction runs, another writer waits for the connection, and gives up
// when its context ends; reads go on meanwhile. A panic in Update's fn
// releases the connection.
func TestWritesAreSerialized(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "gantry.db"))
	r := &store.Repo{Name: "acme/app"}
	if err := s.CreateRepo(ctx, r); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: r.ID, Status: store.StatusQueued}
	if err := s.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Update(ctx, b.ID, func(b *store.Build) error {
			close(inside)
			<-release
			b.Reason = "held"
			return nil
		})
	}()
	<-inside
	if _, err := s.Build(ctx, b.ID); err != nil {
		t.Errorf("Build() while a write is open = %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.CreateRepo(short, &store.Repo{Name: "acme/other"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CreateRepo() while a write is open = %v, want it to wait until its deadline", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Update() = %v", err)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Update(fn panics) did not panic")
			}
		}()
		s.Update(ctx, b.ID, func(*store.Build) error { panic("boom") })
	}()
	short2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := s.CreateRepo(short2, &store.Repo{Name: "acme/other"}); err != nil {
		t.Errorf("CreateRepo() after a panic in Update = %v", err)
	}
	if got, err := s.Build(ctx, b.ID); err != nil || got.Reason != "held" {
		t.Errorf("Build() = %v, %v; want the first Update's reason", got, err)
	}
}
