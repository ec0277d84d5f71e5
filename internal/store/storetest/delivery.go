package storetest

// The outbox (store.Outbox): deliveries, holds, hooks, and LatestBuild.

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// outboxTests run with the rest of the suite.
var outboxTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"RepoAPIURL", testRepoAPIURL},
	{"DeliveriesEnqueue", testDeliveriesEnqueue},
	{"DeliveriesClaim", testDeliveriesClaim},
	{"DeliveriesLeaseExpiry", testDeliveriesLeaseExpiry},
	{"DeliveriesRelease", testDeliveriesRelease},
	{"DeliveriesCoalesce", testDeliveriesCoalesce},
	{"DeliveriesHold", testDeliveriesHold},
	{"DeliveriesOnePerHost", testDeliveriesOnePerHost},
	{"DeliveriesClaimConcurrent", testDeliveriesClaimConcurrent},
	{"DeliveriesFilterAndPrune", testDeliveriesFilterAndPrune},
	{"Hooks", testHooks},
	{"LatestBuild", testLatestBuild},
	{"IssueLinks", testIssueLinks},
}

// delivery is a pending delivery about event, to a host of the event's
// own unless mods set one (one host gets one delivery at a time).
func delivery(r *store.Repo, event string, mods ...func(*store.Delivery)) *store.Delivery {
	host := strings.NewReplacer("/", "-", ".", "-").Replace(event) + ".example.com"
	d := &store.Delivery{Kind: store.DeliveryStatus, RepoID: r.ID, BuildID: 7, Forge: "github", Event: event,
		URL: "https://" + host + "/repos/acme/app/statuses/abc", Host: host,
		Headers: map[string]string{"Accept": "application/vnd.github+json"}, Payload: []byte(`{"state":"pending"}`)}
	for _, m := range mods {
		m(d)
	}
	return d
}

func enqueue(t *testing.T, s store.Store, ds ...*store.Delivery) {
	t.Helper()
	if err := s.EnqueueDeliveries(t.Context(), ds); err != nil {
		t.Fatalf("EnqueueDeliveries() = %v", err)
	}
}

func claim(t *testing.T, s store.Store, limit int, ttl time.Duration) []*store.Delivery {
	t.Helper()
	ds, err := s.ClaimDeliveries(t.Context(), "server-a", limit, ttl)
	if err != nil {
		t.Fatalf("ClaimDeliveries(%d) = %v", limit, err)
	}
	return ds
}

func ids(ds []*store.Delivery) []int64 {
	var out []int64
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// stateOf reads one delivery back.
func stateOf(t *testing.T, s store.Store, id int64) *store.Delivery {
	t.Helper()
	ds, err := s.Deliveries(t.Context(), store.DeliveryFilter{Limit: 1000})
	if err != nil {
		t.Fatalf("Deliveries() = %v", err)
	}
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("delivery %d not listed", id)
	return nil
}

func testRepoAPIURL(t *testing.T, s store.Store) {
	r := &store.Repo{Name: "acme/app", CloneURL: "https://git.example.com/acme/app.git", Forge: "gitea",
		WebhookSecret: "k", APIURL: "https://git.example.com/api/v1"}
	if err := s.CreateRepo(t.Context(), r); err != nil {
		t.Fatalf("CreateRepo() = %v", err)
	}
	got, err := s.Repo(t.Context(), "acme/app")
	if err != nil || got.APIURL != r.APIURL {
		t.Errorf("Repo(acme/app) = %+v, %v; want APIURL %q", got, err, r.APIURL)
	}
}

func testDeliveriesEnqueue(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/app")
	before := time.Now()
	a := delivery(r, "gantry", func(d *store.Delivery) { d.DedupeKey = "status:7:gantry:pending" })
	b := delivery(r, "gantry/test", func(d *store.Delivery) { d.Kind, d.Forge, d.HookID = store.DeliveryHook, "", 3 })
	skipped := delivery(r, "gantry", func(d *store.Delivery) {
		d.State, d.LastError, d.DedupeKey = store.DeliverySkipped, "no credentials", "nocreds:1"
	})
	enqueue(t, s, a, b, skipped)
	if a.ID == 0 || b.ID == 0 || skipped.ID == 0 || a.ID == b.ID {
		t.Fatalf("EnqueueDeliveries set IDs %d, %d, %d; want three distinct", a.ID, b.ID, skipped.ID)
	}
	if a.State != store.DeliveryPending || !near(a.CreatedAt, before) || !near(a.NextAttemptAt, before) || !a.FinishedAt.IsZero() {
		t.Errorf("enqueued = %s, created %v, next %v, finished %v; want pending, due now", a.State, a.CreatedAt, a.NextAttemptAt, a.FinishedAt)
	}
	if skipped.State != store.DeliverySkipped || skipped.FinishedAt.IsZero() {
		t.Errorf("enqueued skipped = %s, finished %v; want skipped with FinishedAt", skipped.State, skipped.FinishedAt)
	}
	got := stateOf(t, s, a.ID)
	want := *a
	want.Repo = "acme/app"
	if diff := cmp.Diff(&want, got, opts...); diff != "" {
		t.Errorf("delivery read back (-want +got):\n%s", diff)
	}

	// The same dedupe key again: not stored, ID 0; the others are.
	dup := delivery(r, "gantry", func(d *store.Delivery) { d.DedupeKey = "status:7:gantry:pending" })
	other := delivery(r, "gantry/build")
	enqueue(t, s, dup, other)
	if dup.ID != 0 || other.ID == 0 {
		t.Errorf("enqueue of a duplicate set IDs %d and %d, want 0 and an ID", dup.ID, other.ID)
	}
	all, err := s.Deliveries(t.Context(), store.DeliveryFilter{})
	if err != nil || len(all) != 4 {
		t.Errorf("Deliveries() = %d, %v; want 4", len(all), err)
	}
	// Skipped deliveries are never claimed; the three pending are.
	if got := claim(t, s, 10, time.Minute); len(got) != 3 {
		t.Errorf("ClaimDeliveries() = %v, want the 3 pending", ids(got))
	}
}

func testDeliveriesClaim(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	later := delivery(r, "later", func(d *store.Delivery) { d.NextAttemptAt = time.Now().Add(time.Hour) })
	first := delivery(r, "first", func(d *store.Delivery) { d.NextAttemptAt = time.Now().Add(-2 * time.Second) })
	second := delivery(r, "second")
	enqueue(t, s, later, second, first)

	got := claim(t, s, 1, time.Minute)
	if len(got) != 1 || got[0].ID != first.ID {
		t.Fatalf("ClaimDeliveries(1) = %v, want the one due first (%d)", ids(got), first.ID)
	}
	c := got[0]
	if c.State != store.DeliverySending || c.Attempts != 1 || c.LeaseToken == 0 || !near(c.LeaseExpires, time.Now().Add(time.Minute)) {
		t.Errorf("claimed = %s attempt %d token %d expires %v; want sending, 1, a token, in a minute", c.State, c.Attempts, c.LeaseToken, c.LeaseExpires)
	}
	if c.Event != "first" || string(c.Payload) != `{"state":"pending"}` || c.Headers["Accept"] != "application/vnd.github+json" || c.Repo != "acme/app" {
		t.Errorf("claimed delivery = %+v, want it whole", c)
	}
	if got := claim(t, s, 5, time.Minute); len(got) != 1 || got[0].ID != second.ID {
		t.Errorf("ClaimDeliveries(5) = %v, want only %d (one is claimed, one not due)", ids(got), second.ID)
	}
	if got := claim(t, s, 5, time.Minute); len(got) != 0 {
		t.Errorf("ClaimDeliveries() with nothing due = %v", ids(got))
	}

	// A retry: pending again, due now; then claimed again, attempt 2.
	c.State, c.LastStatus, c.LastError, c.NextAttemptAt = store.DeliveryPending, 502, "bad gateway", time.Now().Add(-time.Millisecond)
	if err := s.FinishDelivery(ctx, c); err != nil {
		t.Fatalf("FinishDelivery(pending) = %v", err)
	}
	if st := stateOf(t, s, c.ID); st.State != store.DeliveryPending || st.LastStatus != 502 || st.LastError != "bad gateway" || !st.FinishedAt.IsZero() {
		t.Errorf("after a retry = %s %d %q finished %v; want pending 502 \"bad gateway\"", st.State, st.LastStatus, st.LastError, st.FinishedAt)
	}
	// The lease it had is gone.
	if err := s.FinishDelivery(ctx, c); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("FinishDelivery() twice = %v, want ErrStaleLease", err)
	}
	got = claim(t, s, 5, time.Minute)
	if len(got) != 1 || got[0].ID != c.ID || got[0].Attempts != 2 || got[0].LeaseToken == c.LeaseToken {
		t.Fatalf("claim of the retry = %+v, want %d at attempt 2 with a new token", got, c.ID)
	}
	c = got[0]
	c.State, c.LastStatus, c.LastError = store.DeliveryDelivered, 201, ""
	if err := s.FinishDelivery(ctx, c); err != nil {
		t.Fatalf("FinishDelivery(delivered) = %v", err)
	}
	if st := stateOf(t, s, c.ID); st.State != store.DeliveryDelivered || st.LastStatus != 201 || !near(st.FinishedAt, time.Now()) || st.Attempts != 2 {
		t.Errorf("delivered = %s %d finished %v attempts %d; want delivered 201, now, 2", st.State, st.LastStatus, st.FinishedAt, st.Attempts)
	}
	if err := s.FinishDelivery(ctx, &store.Delivery{ID: c.ID, LeaseToken: c.LeaseToken, State: store.DeliverySending}); err == nil {
		t.Errorf("FinishDelivery(state sending) = nil, want an error")
	}
}

func testDeliveriesLeaseExpiry(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/app")
	d := delivery(r, "gantry")
	enqueue(t, s, d)
	first := claim(t, s, 1, 10*time.Millisecond)
	if len(first) != 1 {
		t.Fatalf("claim = %v", ids(first))
	}
	time.Sleep(30 * time.Millisecond)
	// Its server died: the lease ran out and the delivery is claimed again.
	second := claim(t, s, 1, time.Minute)
	if len(second) != 1 || second[0].ID != d.ID || second[0].Attempts != 2 {
		t.Fatalf("claim after the lease expired = %+v, want %d at attempt 2", second, d.ID)
	}
	first[0].State = store.DeliveryDelivered
	if err := s.FinishDelivery(t.Context(), first[0]); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("FinishDelivery() under the expired lease = %v, want ErrStaleLease", err)
	}
	second[0].State = store.DeliveryFailed
	second[0].LastError = "gave up"
	if err := s.FinishDelivery(t.Context(), second[0]); err != nil {
		t.Fatalf("FinishDelivery() under the new lease = %v", err)
	}
	if st := stateOf(t, s, d.ID); st.State != store.DeliveryFailed || st.LastError != "gave up" {
		t.Errorf("delivery = %s %q, want failed \"gave up\"", st.State, st.LastError)
	}
}

// A server that starts again takes back what it was sending when it
// died; another server's claims stay.
func testDeliveriesRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	mine, theirs := delivery(r, "gantry"), delivery(r, "gantry/test")
	enqueue(t, s, mine, theirs)
	if got, err := s.ClaimDeliveries(ctx, "server-a", 1, time.Hour); err != nil || len(got) != 1 || got[0].ClaimedBy != "server-a" {
		t.Fatalf("ClaimDeliveries(server-a) = %+v, %v", got, err)
	}
	if got, err := s.ClaimDeliveries(ctx, "server-b", 1, time.Hour); err != nil || len(got) != 1 {
		t.Fatalf("ClaimDeliveries(server-b) = %+v, %v", got, err)
	}
	n, err := s.ReleaseDeliveries(ctx, "server-a")
	if err != nil || n != 1 {
		t.Fatalf("ReleaseDeliveries(server-a) = %d, %v; want 1", n, err)
	}
	got := claim(t, s, 10, time.Hour)
	if len(got) != 1 || got[0].ID != mine.ID || got[0].Attempts != 2 {
		t.Errorf("claim after the release = %+v, want %d again, at attempt 2", got, mine.ID)
	}
	if st := stateOf(t, s, theirs.ID); st.State != store.DeliverySending || st.ClaimedBy != "server-b" {
		t.Errorf("another server's claim after the release = %s by %q, want sending by server-b", st.State, st.ClaimedBy)
	}
	if n, err := s.ReleaseDeliveries(ctx, "server-c"); err != nil || n != 0 {
		t.Errorf("ReleaseDeliveries(server-c) = %d, %v; want 0", n, err)
	}
}

func testDeliveriesCoalesce(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	key := func(d *store.Delivery) { d.CoalesceKey = "status:1:abc:gantry" }
	a := delivery(r, "gantry", key)
	other := delivery(r, "gantry/test") // another key: untouched
	enqueue(t, s, a, other)
	b := delivery(r, "gantry", key)
	enqueue(t, s, b)
	if st := stateOf(t, s, a.ID); st.State != store.DeliverySuperseded || st.FinishedAt.IsZero() {
		t.Errorf("older pending delivery with the key = %s, want superseded", st.State)
	}
	got := claim(t, s, 10, time.Minute)
	if diff := cmp.Diff([]int64{other.ID, b.ID}, ids(got), cmpopts.SortSlices(func(x, y int64) bool { return x < y })); diff != "" {
		t.Fatalf("claim (-want +got):\n%s", diff)
	}
	var sending *store.Delivery
	for _, d := range got {
		if d.ID == b.ID {
			sending = d
		}
	}
	// A newer one while b is being sent: it waits for b.
	c := delivery(r, "gantry", key)
	enqueue(t, s, c)
	if st := stateOf(t, s, b.ID); st.State != store.DeliverySending {
		t.Errorf("delivery being sent = %s after a newer one came, want still sending", st.State)
	}
	if got := claim(t, s, 10, time.Minute); len(got) != 0 {
		t.Errorf("claim while an older one with the key is sent = %v, want none", ids(got))
	}
	// b fails and would be retried, but c follows it: superseded.
	sending.State, sending.LastStatus = store.DeliveryPending, 503
	if err := s.FinishDelivery(ctx, sending); err != nil {
		t.Fatalf("FinishDelivery() = %v", err)
	}
	if sending.State != store.DeliverySuperseded {
		t.Errorf("FinishDelivery(pending) of one a newer follows set State %s, want superseded", sending.State)
	}
	if st := stateOf(t, s, b.ID); st.State != store.DeliverySuperseded || st.LastStatus != 503 {
		t.Errorf("retried delivery a newer follows = %s %d, want superseded 503", st.State, st.LastStatus)
	}
	if got := claim(t, s, 10, time.Minute); len(got) != 1 || got[0].ID != c.ID {
		t.Errorf("claim after the older one ended = %v, want %d", ids(got), c.ID)
	}

	// An expired claim of an older one with a newer behind it is
	// superseded, not sent again.
	d := delivery(r, "gantry/x", func(d *store.Delivery) { d.CoalesceKey = "k2" })
	enqueue(t, s, d)
	if got := claim(t, s, 1, 10*time.Millisecond); len(got) != 1 || got[0].ID != d.ID {
		t.Fatalf("claim = %v, want %d", ids(got), d.ID)
	}
	e := delivery(r, "gantry/x", func(d *store.Delivery) { d.CoalesceKey = "k2" })
	enqueue(t, s, e)
	time.Sleep(30 * time.Millisecond)
	if got := claim(t, s, 10, time.Minute); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("claim after the older claim expired = %v, want only the newer %d", ids(got), e.ID)
	}
	if st := stateOf(t, s, d.ID); st.State != store.DeliverySuperseded {
		t.Errorf("expired older claim = %s, want superseded", st.State)
	}
}

func testDeliveriesHold(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	gh := delivery(r, "gantry", func(d *store.Delivery) { d.Host = "api.example.com" })
	hook := delivery(r, "build.finished", func(d *store.Delivery) { d.Host = "hooks.example.com" })
	enqueue(t, s, gh, hook)
	if err := s.HoldDeliveries(ctx, "api.example.com", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("HoldDeliveries() = %v", err)
	}
	// A shorter hold does not shorten it.
	if err := s.HoldDeliveries(ctx, "api.example.com", time.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("HoldDeliveries() = %v", err)
	}
	if got := claim(t, s, 10, time.Minute); len(got) != 1 || got[0].ID != hook.ID {
		t.Errorf("claim with api.example.com held = %v, want only %d", ids(got), hook.ID)
	}
	// A hold that ended holds nothing.
	if err := s.HoldDeliveries(ctx, "other.example.com", time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("HoldDeliveries() = %v", err)
	}
	d := delivery(r, "x", func(d *store.Delivery) { d.Host = "other.example.com" })
	enqueue(t, s, d)
	if got := claim(t, s, 10, time.Minute); len(got) != 1 || got[0].ID != d.ID {
		t.Errorf("claim past a hold's end = %v, want %d", ids(got), d.ID)
	}
}

// One host gets one delivery at a time, however many claim at once.
func testDeliveriesOnePerHost(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	a := delivery(r, "a", func(d *store.Delivery) { d.Host = "api.example.com" })
	b := delivery(r, "b", func(d *store.Delivery) { d.Host = "api.example.com" })
	other := delivery(r, "c", func(d *store.Delivery) { d.Host = "hooks.example.com" })
	enqueue(t, s, a, b, other)
	got := claim(t, s, 10, time.Minute)
	if diff := cmp.Diff([]int64{a.ID, other.ID}, ids(got)); diff != "" {
		t.Fatalf("claim of two deliveries to one host and one to another (-want +got):\n%s", diff)
	}
	if got := claim(t, s, 10, time.Minute); len(got) != 0 {
		t.Errorf("claim while api.example.com has one on the wire = %v, want none", ids(got))
	}
	got[0].State = store.DeliveryDelivered
	if err := s.FinishDelivery(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, 10, time.Minute); len(got) != 1 || got[0].ID != b.ID {
		t.Errorf("claim once the host is free = %v, want %d", ids(got), b.ID)
	}

	// Many claimers (servers) at once: never two on the wire to one host.
	var ds []*store.Delivery
	for i := range 20 {
		ds = append(ds, delivery(r, fmt.Sprint("x", i), func(d *store.Delivery) { d.Host = "busy.example.com" }))
	}
	enqueue(t, s, ds...)
	var onWire, claimed atomic.Int32
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(20 * time.Second)
			for claimed.Load() < 20 && time.Now().Before(deadline) {
				got, err := s.ClaimDeliveries(ctx, fmt.Sprint("server-", i), 3, time.Minute)
				if err != nil {
					t.Errorf("ClaimDeliveries() = %v", err)
					return
				}
				for _, d := range got {
					if d.Host != "busy.example.com" {
						continue
					}
					if n := onWire.Add(1); n != 1 {
						t.Errorf("%d deliveries to one host on the wire at once", n)
					}
					claimed.Add(1)
					time.Sleep(time.Millisecond)
					onWire.Add(-1)
					d.State = store.DeliveryDelivered
					if err := s.FinishDelivery(ctx, d); err != nil {
						t.Errorf("FinishDelivery() = %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if claimed.Load() != 20 {
		t.Errorf("%d of 20 deliveries to one host claimed", claimed.Load())
	}
}

// Many claimers at once, as on several servers: each delivery is claimed
// exactly once.
func testDeliveriesClaimConcurrent(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/app")
	const n = 60
	var ds []*store.Delivery
	for i := range n {
		ds = append(ds, delivery(r, fmt.Sprint(i)))
	}
	enqueue(t, s, ds...)
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := s.ClaimDeliveries(t.Context(), fmt.Sprint("server-", i), 3, time.Minute)
				if err != nil {
					t.Errorf("ClaimDeliveries() = %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d deliveries claimed, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("delivery %d claimed %d times", id, c)
		}
	}
}

func testDeliveriesFilterAndPrune(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := newRepo(t, s, "acme/a"), newRepo(t, s, "acme/b")
	a1 := delivery(a, "gantry")
	a2 := delivery(a, "build.finished", func(d *store.Delivery) { d.Kind, d.BuildID = store.DeliveryHook, 9 })
	b1 := delivery(b, "gantry", func(d *store.Delivery) { d.State = store.DeliverySkipped })
	enqueue(t, s, a1, a2, b1)
	for _, tc := range []struct {
		f    store.DeliveryFilter
		want []int64
	}{
		{store.DeliveryFilter{}, []int64{b1.ID, a2.ID, a1.ID}},
		{store.DeliveryFilter{Repo: "acme/a"}, []int64{a2.ID, a1.ID}},
		{store.DeliveryFilter{State: store.DeliverySkipped}, []int64{b1.ID}},
		{store.DeliveryFilter{Kind: store.DeliveryHook}, []int64{a2.ID}},
		{store.DeliveryFilter{BuildID: 9}, []int64{a2.ID}},
		{store.DeliveryFilter{Repo: "acme/a", Kind: store.DeliveryStatus}, []int64{a1.ID}},
		{store.DeliveryFilter{Limit: 1}, []int64{b1.ID}},
		{store.DeliveryFilter{Repo: "acme/none"}, nil},
	} {
		got, err := s.Deliveries(ctx, tc.f)
		if err != nil {
			t.Fatalf("Deliveries(%+v) = %v", tc.f, err)
		}
		if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
			t.Errorf("Deliveries(%+v) (-want +got):\n%s", tc.f, diff)
		}
	}

	// Only final deliveries that finished before the cut are pruned.
	n, err := s.PruneDeliveries(ctx, time.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Errorf("PruneDeliveries(a minute ahead) = %d, %v; want the 1 skipped", n, err)
	}
	if n, err := s.PruneDeliveries(ctx, time.Now().Add(time.Minute)); err != nil || n != 0 {
		t.Errorf("PruneDeliveries() again = %d, %v; want 0", n, err)
	}
	if all, _ := s.Deliveries(ctx, store.DeliveryFilter{}); len(all) != 2 {
		t.Errorf("%d deliveries after pruning, want the 2 pending", len(all))
	}
}

func testHooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	other := newRepo(t, s, "acme/other")
	if err := s.CreateHook(ctx, &store.Hook{URL: "https://x", Secret: "s", Events: []string{"build.*"}, RepoID: 99999, Format: store.HookJSON}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateHook(missing repo) = %v, want ErrNotFound", err)
	}
	before := time.Now()
	global := &store.Hook{URL: "https://hooks.example.com/in", Secret: "s3cret", Events: []string{"build.finished", "deployment.*"}, Format: store.HookJSON}
	scoped := &store.Hook{URL: "https://chat.example.com/T/B/X", Secret: "k", Events: []string{"build.failed"}, RepoID: r.ID, Branch: "main", Environment: "prod*", Format: store.HookSlack}
	gone := &store.Hook{URL: "https://gone.example.com", Secret: "k", Events: []string{"*"}, RepoID: other.ID, Format: store.HookJSON}
	for _, h := range []*store.Hook{global, scoped, gone} {
		if err := s.CreateHook(ctx, h); err != nil {
			t.Fatalf("CreateHook(%s) = %v", h.URL, err)
		}
	}
	if global.ID == 0 || !near(global.CreatedAt, before) || scoped.Repo != "acme/app" || global.Repo != "" {
		t.Errorf("CreateHook set %+v and %+v", global, scoped)
	}
	all, err := s.Hooks(ctx)
	if err != nil {
		t.Fatalf("Hooks() = %v", err)
	}
	if diff := cmp.Diff([]*store.Hook{global, scoped, gone}, all, opts...); diff != "" {
		t.Errorf("Hooks() (-want +got):\n%s", diff)
	}
	got, err := s.Hook(ctx, scoped.ID)
	if diff := cmp.Diff(scoped, got, opts...); err != nil || diff != "" {
		t.Errorf("Hook(%d) = %v (-want +got):\n%s", scoped.ID, err, diff)
	}

	// Removing a hook fails what it still owed, and keeps what it sent.
	sent := delivery(r, "build.finished", func(d *store.Delivery) { d.Kind, d.HookID = store.DeliveryHook, global.ID })
	owed := delivery(r, "build.finished", func(d *store.Delivery) { d.Kind, d.HookID = store.DeliveryHook, global.ID })
	status := delivery(r, "gantry")
	enqueue(t, s, sent)
	c := claim(t, s, 1, time.Minute)
	c[0].State = store.DeliveryDelivered
	if err := s.FinishDelivery(ctx, c[0]); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, owed, status)
	if err := s.DeleteHook(ctx, global.ID); err != nil {
		t.Fatalf("DeleteHook() = %v", err)
	}
	if err := s.DeleteHook(ctx, global.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteHook() twice = %v, want ErrNotFound", err)
	}
	if _, err := s.Hook(ctx, global.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Hook(removed) = %v, want ErrNotFound", err)
	}
	if st := stateOf(t, s, owed.ID); st.State != store.DeliveryFailed || st.LastError != "hook removed" {
		t.Errorf("owed delivery of a removed hook = %s %q, want failed \"hook removed\"", st.State, st.LastError)
	}
	if st := stateOf(t, s, sent.ID); st.State != store.DeliveryDelivered {
		t.Errorf("sent delivery of a removed hook = %s, want delivered", st.State)
	}
	if st := stateOf(t, s, status.ID); st.State != store.DeliveryPending {
		t.Errorf("a status delivery after a hook was removed = %s, want pending", st.State)
	}

	// Removing a repo removes its hooks and its deliveries.
	enqueue(t, s, delivery(other, "gantry"))
	if err := s.DeleteRepo(ctx, "acme/other"); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Hooks(ctx); len(all) != 1 || all[0].ID != scoped.ID {
		t.Errorf("hooks after removing acme/other = %+v, want only %d", all, scoped.ID)
	}
	if ds, _ := s.Deliveries(ctx, store.DeliveryFilter{}); len(ds) != 3 {
		t.Errorf("%d deliveries after removing acme/other, want 3", len(ds))
	}
}

func testLatestBuild(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	mk := func(branch, status string) *store.Build {
		return newBuild(t, s, r, nil, func(b *store.Build) {
			b.Branch, b.Status = branch, status
			if store.Finished(status) {
				b.FinishedAt = at(time.Second)
			}
		})
	}
	ok := mk("main", store.StatusSuccess)
	failed := mk("main", store.StatusFailure)
	mk("main", store.StatusRunning)
	mk("dev", store.StatusSuccess)
	finished := []string{store.StatusSuccess, store.StatusFailure, store.StatusError}
	for _, tc := range []struct {
		branch   string
		before   int64
		statuses []string
		want     int64
	}{
		{"main", 0, finished, failed.ID},
		{"main", failed.ID, finished, ok.ID},
		{"main", 0, []string{store.StatusSuccess}, ok.ID},
		{"main", ok.ID, finished, 0},
		{"none", 0, finished, 0},
		{"main", 0, nil, 0},
	} {
		got, err := s.LatestBuild(ctx, "acme/app", tc.branch, tc.before, tc.statuses...)
		switch {
		case tc.want == 0 && !errors.Is(err, store.ErrNotFound):
			t.Errorf("LatestBuild(%s, before %d, %v) = %v, %v; want ErrNotFound", tc.branch, tc.before, tc.statuses, got, err)
		case tc.want != 0 && (err != nil || got.ID != tc.want || got.Repo != "acme/app" || got.Commit == ""):
			t.Errorf("LatestBuild(%s, before %d, %v) = %+v, %v; want build %d", tc.branch, tc.before, tc.statuses, got, err, tc.want)
		}
	}
}

func testIssueLinks(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	a := newBuild(t, s, r, []*store.Job{queued("test", 0)})
	b := newBuild(t, s, r, nil)
	other := newBuild(t, s, newRepo(t, s, "acme/other"), nil)
	for id, keys := range map[int64][]string{a.ID: {"OPS-7", "#12"}, b.ID: {"OPS-7"}, other.ID: {"OPS-7", "ABC-1"}} {
		if err := s.LinkIssues(ctx, id, keys); err != nil {
			t.Fatalf("LinkIssues(%d) = %v", id, err)
		}
	}
	// Again, and with nothing: no change, no error.
	if err := s.LinkIssues(ctx, a.ID, []string{"#12", "OPS-7"}); err != nil {
		t.Errorf("LinkIssues() again = %v", err)
	}
	if err := s.LinkIssues(ctx, a.ID, nil); err != nil {
		t.Errorf("LinkIssues(no keys) = %v", err)
	}
	if err := s.LinkIssues(ctx, 999999, []string{"X-1"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LinkIssues(missing build) = %v, want ErrNotFound", err)
	}
	got, err := s.BuildIssues(ctx, a.ID)
	if err != nil || !cmp.Equal(got, []string{"#12", "OPS-7"}) {
		t.Errorf("BuildIssues(a) = %q, %v", got, err)
	}
	builds, err := s.IssueBuilds(ctx, "OPS-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []int64
	for _, bb := range builds {
		gotIDs = append(gotIDs, bb.ID)
	}
	if diff := cmp.Diff([]int64{other.ID, b.ID, a.ID}, gotIDs); diff != "" {
		t.Errorf("IssueBuilds(OPS-7) (-want +got):\n%s", diff)
	}
	if len(builds) == 3 && (builds[2].Repo != "acme/app" || len(builds[2].Jobs) != 1 || builds[2].Jobs[0].Name != "test") {
		t.Errorf("IssueBuilds gave %+v, want the build with its repo and jobs", builds[2])
	}
	if builds, err := s.IssueBuilds(ctx, "OPS-7", 1); err != nil || len(builds) != 1 || builds[0].ID != other.ID {
		t.Errorf("IssueBuilds(limit 1) = %v, %v", builds, err)
	}
	if builds, err := s.IssueBuilds(ctx, "NOPE-1", 0); err != nil || len(builds) != 0 {
		t.Errorf("IssueBuilds(unknown) = %v, %v; want none", builds, err)
	}
	// A removed repo takes its builds' links along.
	if err := s.DeleteRepo(ctx, "acme/other"); err != nil {
		t.Fatal(err)
	}
	if builds, _ := s.IssueBuilds(ctx, "ABC-1", 0); len(builds) != 0 {
		t.Errorf("IssueBuilds after the repo was removed = %v", builds)
	}
}
