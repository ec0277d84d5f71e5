package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/google/go-cmp/cmp"
)

// auditTests are the conformance tests of store.AuditLog; Run runs them
// with the others.
var auditTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"AuditAppend", testAuditAppend},
	{"AuditEntries", testAuditEntries},
	{"AuditEntriesDefaultLimit", testAuditEntriesDefaultLimit},
	{"AuditChain", testAuditChain},
	{"AuditAppendConcurrent", testAuditAppendConcurrent},
	{"AuditRefusesBadText", testAuditRefusesBadText},
	{"AuditHasNoEdit", testAuditHasNoEdit},
}

// appendAudit appends an entry and returns it as the store filled it in.
func appendAudit(t *testing.T, s store.AuditLog, actor, action, object string, detail map[string]string) *store.AuditEntry {
	t.Helper()
	e := &store.AuditEntry{Actor: actor, Address: "192.0.2.7", Action: action, Object: object, Reason: "because " + action, Detail: detail}
	if err := s.AppendAudit(t.Context(), e); err != nil {
		t.Fatalf("AppendAudit(%s %s) = %v", action, object, err)
	}
	return e
}

// checkLinked fails unless entries, oldest first, are numbered 1, 2, 3...
// each hashed as store.AuditHash says and naming the hash of the one
// before.
func checkLinked(t *testing.T, entries []*store.AuditEntry) {
	t.Helper()
	var prev []byte
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has Seq %d, want %d", i, e.Seq, i+1)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Fatalf("entry %d: PrevHash = %x, want %x (the hash of entry %d)", e.Seq, e.PrevHash, prev, e.Seq-1)
		}
		if want := store.AuditHash(e); !bytes.Equal(e.Hash, want) {
			t.Fatalf("entry %d: Hash = %x, want AuditHash = %x", e.Seq, e.Hash, want)
		}
		prev = e.Hash
	}
}

func testAuditAppend(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	first := appendAudit(t, s, "token:admin#1", "repo.add", "repo:acme/web",
		map[string]string{"forge": "github", "clone_url": "https://example.com/acme/web.git", "quote": `"<&>" ünïcode ✓`})
	second := appendAudit(t, s, "forge:github", "build.trigger", "build:1", nil)
	after := time.Now()

	if first.Seq != 1 || len(first.PrevHash) != 0 || len(first.Hash) != 32 {
		t.Errorf("first entry: Seq %d, PrevHash %x, Hash %x; want 1, empty, 32 bytes", first.Seq, first.PrevHash, first.Hash)
	}
	if second.Seq != 2 || !bytes.Equal(second.PrevHash, first.Hash) {
		t.Errorf("second entry: Seq %d, PrevHash %x; want 2 and the first's hash %x", second.Seq, second.PrevHash, first.Hash)
	}
	for _, e := range []*store.AuditEntry{first, second} {
		if e.At.Before(before.Add(-time.Second)) || e.At.After(after.Add(time.Second)) || e.At.Nanosecond()%1000 != 0 {
			t.Errorf("entry %d: At = %v, want a whole microsecond between %v and %v", e.Seq, e.At, before, after)
		}
		if !bytes.Equal(e.Hash, store.AuditHash(e)) {
			t.Errorf("entry %d: Hash = %x, want AuditHash %x", e.Seq, e.Hash, store.AuditHash(e))
		}
	}
	// What is read back is what AppendAudit returned, to the hash.
	got, err := s.AuditEntries(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*store.AuditEntry{second, first}, got, opts...); diff != "" {
		t.Errorf("AuditEntries() differs from what AppendAudit returned (-want +got):\n%s", diff)
	}
	checkLinked(t, []*store.AuditEntry{got[1], got[0]})
}

func testAuditEntries(t *testing.T, s store.Store) {
	ctx := t.Context()
	var all []*store.AuditEntry // oldest first
	for i, a := range []struct{ actor, action, object string }{
		{"token:admin#1", "repo.add", "repo:acme/web"},
		{"token:admin#1", "lock.add", "lock:deploy"},
		{"forge:github", "build.trigger", "build:1"},
		{"token:ops#2", "build.cancel", "build:1"},
		{"token:admin#1", "repo.rm", "repo:acme/web"},
	} {
		if i > 0 {
			time.Sleep(2 * time.Millisecond) // distinct times for Since
		}
		all = append(all, appendAudit(t, s, a.actor, a.action, a.object, nil))
	}
	newest := func(idx ...int) []int64 {
		var seqs []int64
		for _, i := range slices.Backward(idx) {
			seqs = append(seqs, all[i].Seq)
		}
		return seqs
	}
	for _, tt := range []struct {
		name string
		f    store.AuditFilter
		want []int64
	}{
		{"all", store.AuditFilter{}, newest(0, 1, 2, 3, 4)},
		{"actor", store.AuditFilter{Actor: "token:admin#1"}, newest(0, 1, 4)},
		{"actor is exact", store.AuditFilter{Actor: "token:admin"}, nil},
		{"action", store.AuditFilter{Action: "build.cancel"}, newest(3)},
		{"object", store.AuditFilter{Object: "build:1"}, newest(2, 3)},
		{"object is exact", store.AuditFilter{Object: "build:"}, nil},
		{"actor and object", store.AuditFilter{Actor: "token:admin#1", Object: "repo:acme/web"}, newest(0, 4)},
		{"since", store.AuditFilter{Since: all[2].At}, newest(2, 3, 4)},
		{"since in another zone", store.AuditFilter{Since: all[3].At.In(time.FixedZone("X", -7*3600))}, newest(3, 4)},
		{"since after all", store.AuditFilter{Since: all[4].At.Add(time.Second)}, nil},
		{"limit", store.AuditFilter{Limit: 2}, newest(3, 4)},
		{"limit with actor", store.AuditFilter{Actor: "token:admin#1", Limit: 2}, newest(1, 4)},
	} {
		got, err := s.AuditEntries(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: AuditEntries(%+v) = %v", tt.name, tt.f, err)
		}
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, tt.want) {
			t.Errorf("%s: AuditEntries(%+v) = entries %v, want %v", tt.name, tt.f, seqs, tt.want)
		}
	}
}

func testAuditEntriesDefaultLimit(t *testing.T, s store.Store) {
	for i := range 55 {
		appendAudit(t, s, "token:admin#1", "lock.add", fmt.Sprintf("lock:l%d", i), nil)
	}
	got, err := s.AuditEntries(t.Context(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 || got[0].Seq != 55 || got[49].Seq != 6 {
		t.Errorf("AuditEntries() without a limit = %d entries from %d; want the newest 50, 55 down to 6", len(got), got[0].Seq)
	}
}

func testAuditChain(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i := range 7 {
		appendAudit(t, s, "token:admin#1", "lock.add", fmt.Sprintf("lock:l%d", i), map[string]string{"capacity": fmt.Sprint(i)})
	}
	var chain []*store.AuditEntry
	var after int64
	for {
		page, err := s.AuditChain(ctx, after, 3)
		if err != nil {
			t.Fatalf("AuditChain(%d, 3) = %v", after, err)
		}
		if len(page) > 3 {
			t.Fatalf("AuditChain(%d, 3) returned %d entries", after, len(page))
		}
		chain = append(chain, page...)
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].Seq
	}
	if len(chain) != 7 {
		t.Fatalf("AuditChain in pages of 3 = %d entries, want 7", len(chain))
	}
	checkLinked(t, chain)
	if chain[6].Detail["capacity"] != "6" {
		t.Errorf("entry 7 detail = %v, want capacity 6", chain[6].Detail)
	}
	all, err := s.AuditChain(ctx, 0, 0)
	if err != nil || len(all) != 7 {
		t.Errorf("AuditChain(0, 0) = %d entries, %v; want all 7", len(all), err)
	}
	if none, err := s.AuditChain(ctx, 7, 10); err != nil || len(none) != 0 {
		t.Errorf("AuditChain(7, 10) = %d entries, %v; want none", len(none), err)
	}
}

// testAuditAppendConcurrent appends from many goroutines at once: the
// chain has no gap, no fork and every entry once.
func testAuditAppendConcurrent(t *testing.T, s store.Store) {
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := &store.AuditEntry{Actor: fmt.Sprintf("token:w%d#%d", w, w), Action: "lock.add", Object: fmt.Sprintf("lock:%d-%d", w, i)}
				if err := s.AppendAudit(t.Context(), e); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent AppendAudit = %v", err)
	}
	chain, err := s.AuditChain(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != writers*each {
		t.Fatalf("after %d concurrent appends the chain has %d entries", writers*each, len(chain))
	}
	checkLinked(t, chain)
	seen := map[string]bool{}
	for _, e := range chain {
		if seen[e.Object] {
			t.Errorf("%s is in the chain twice", e.Object)
		}
		seen[e.Object] = true
	}
}

func testAuditRefusesBadText(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, e := range []*store.AuditEntry{
		{Actor: "token:a#1", Action: "repo.add", Object: "repo:\xff"},
		{Actor: "token:a#1", Action: "repo.add", Reason: "nul\x00"},
		{Actor: "token:a#1", Action: "repo.add", Detail: map[string]string{"k": "\xc3"}},
		{Actor: "token:a#1", Action: "repo.add", Detail: map[string]string{"\x00": "v"}},
		{Actor: "", Action: "repo.add"},
		{Actor: "token:a#1", Action: ""},
	} {
		if err := s.AppendAudit(ctx, e); !errors.Is(err, store.ErrBadAuditEntry) {
			t.Errorf("AppendAudit(%+v) = %v, want ErrBadAuditEntry", e, err)
		}
	}
	if got, err := s.AuditEntries(ctx, store.AuditFilter{}); err != nil || len(got) != 0 {
		t.Errorf("after refused appends AuditEntries() = %d entries, %v; want none", len(got), err)
	}
	// Sanitize makes the same text recordable.
	e := &store.AuditEntry{Actor: "token:a#1", Action: "repo.add", Object: "repo:\xff", Reason: "nul\x00", Detail: map[string]string{"\x00": "\xc3"}}
	e.Sanitize()
	if err := s.AppendAudit(ctx, e); err != nil {
		t.Fatalf("AppendAudit(sanitized) = %v", err)
	}
	got, err := s.AuditEntries(ctx, store.AuditFilter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("AuditEntries() = %d, %v", len(got), err)
	}
	if got[0].Object != "repo:\uFFFD" || got[0].Reason != "nul\uFFFD" || got[0].Detail["\uFFFD"] != "\uFFFD" || !bytes.Equal(got[0].Hash, store.AuditHash(got[0])) {
		t.Errorf("sanitized entry read back as %+v", got[0])
	}
}

// testAuditHasNoEdit: Not in store.go as a method, but its point: a store
// has no method that changes or removes an audit entry.
func testAuditHasNoEdit(t *testing.T, s store.Store) {
	allowed := []string{"AppendAudit", "AuditEntries", "AuditChain"}
	ty := reflect.TypeOf(s)
	for i := range ty.NumMethod() {
		name := ty.Method(i).Name
		if strings.Contains(strings.ToLower(name), "audit") && !slices.Contains(allowed, name) {
			t.Errorf("%s has method %s: the audit log is append-only, its methods are %v", ty, name, allowed)
		}
	}
}
