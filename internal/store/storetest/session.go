package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/store"
)

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	bob := newUser(t, s, "bob", false)
	tok := &store.Token{Name: "laptop", Hash: []byte("bob's token"), UserID: bob.ID, ExpiresAt: at(48 * time.Hour)}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatalf("CreateToken() = %v", err)
	}
	before := time.Now()
	se := &store.Session{Hash: []byte("session one"), TokenID: tok.ID, ExpiresAt: at(time.Hour)}
	if err := s.CreateSession(ctx, se); err != nil {
		t.Fatalf("CreateSession() = %v", err)
	}
	if !near(se.CreatedAt, before) {
		t.Errorf("CreateSession() set CreatedAt %v, want about %v", se.CreatedAt, before)
	}
	gotSe, gotTok, err := s.Session(ctx, se.Hash)
	if err != nil {
		t.Fatalf("Session() = %v", err)
	}
	if diff := cmp.Diff(se, gotSe, opts...); diff != "" {
		t.Errorf("Session() session (-want +got):\n%s", diff)
	}
	wantTok := *tok
	wantTok.User = "bob"
	if diff := cmp.Diff(&wantTok, gotTok, opts...); diff != "" {
		t.Errorf("Session() token (-want +got):\n%s", diff)
	}

	if err := s.CreateSession(ctx, &store.Session{Hash: se.Hash, TokenID: tok.ID, ExpiresAt: at(time.Hour)}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSession(same hash) = %v, want ErrConflict", err)
	}
	if err := s.CreateSession(ctx, &store.Session{Hash: []byte("no token"), TokenID: tok.ID + 1000, ExpiresAt: at(time.Hour)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateSession(missing token) = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Session(ctx, []byte("no such session")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session(unknown) = %v, want ErrNotFound", err)
	}

	// A revoked token still reads back with its session: the caller sees
	// RevokedAt and refuses it.
	if _, err := s.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatalf("RevokeToken() = %v", err)
	}
	if _, gotTok, err := s.Session(ctx, se.Hash); err != nil || gotTok.RevokedAt.IsZero() {
		t.Errorf("Session() after RevokeToken = %+v, %v; want the token with RevokedAt", gotTok, err)
	}

	if err := s.DeleteSession(ctx, se.Hash); err != nil {
		t.Errorf("DeleteSession() = %v", err)
	}
	if _, _, err := s.Session(ctx, se.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session() after DeleteSession = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, se.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSession() again = %v, want ErrNotFound", err)
	}
}

func testSessionsExpire(t *testing.T, s store.Store) {
	ctx := t.Context()
	bob := newUser(t, s, "bob", false)
	tok := &store.Token{Name: "laptop", Hash: []byte("bob's token"), UserID: bob.ID}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatalf("CreateToken() = %v", err)
	}
	for i, exp := range []time.Duration{-time.Hour, 0, time.Minute, time.Hour} {
		if err := s.CreateSession(ctx, &store.Session{Hash: fmt.Appendf(nil, "s%d", i), TokenID: tok.ID, ExpiresAt: at(exp)}); err != nil {
			t.Fatalf("CreateSession(%d) = %v", i, err)
		}
	}
	n, err := s.DeleteExpiredSessions(ctx, base)
	if err != nil || n != 2 {
		t.Errorf("DeleteExpiredSessions(base) = %d, %v; want 2 (the one before and the one at base)", n, err)
	}
	for i, wantKept := range []bool{false, false, true, true} {
		_, _, err := s.Session(ctx, fmt.Appendf(nil, "s%d", i))
		if kept := err == nil; kept != wantKept {
			t.Errorf("Session(s%d) after DeleteExpiredSessions = %v; want kept %v", i, err, wantKept)
		}
	}
	// A session goes with its user's tokens.
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatalf("DeleteUser() = %v", err)
	}
	if _, _, err := s.Session(ctx, []byte("s3")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session() after DeleteUser = %v, want ErrNotFound", err)
	}
}

func testLogsBefore(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	newBuild(t, s, r, []*store.Job{queued("test", 0)})
	_, j, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	// Steps 0 and 1 interleave: 10 chunks, seq 1..10, odd ones step 0.
	var all []*store.LogChunk
	for i := range 10 {
		c := &store.LogChunk{Step: i % 2, Data: fmt.Appendf(nil, "line %d\n", i), CreatedAt: at(time.Duration(i) * time.Millisecond)}
		if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{c}); err != nil {
			t.Fatalf("AppendLogs() = %v", err)
		}
		all = append(all, c)
	}
	seqs := func(cs []*store.LogChunk) []int64 {
		var out []int64
		for _, c := range cs {
			out = append(out, c.Seq)
		}
		return out
	}
	for _, tt := range []struct {
		step   int
		before int64
		limit  int
		want   []int64
	}{
		{-1, 0, 3, []int64{8, 9, 10}},
		{-1, 8, 3, []int64{5, 6, 7}},
		{-1, 3, 5, []int64{1, 2}},
		{-1, 1, 5, nil},
		{0, 0, 2, []int64{7, 9}},
		{1, 0, 2, []int64{8, 10}},
		{1, 8, 10, []int64{2, 4, 6}},
		{2, 0, 10, nil},
		{-1, 0, 0, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	} {
		got, err := s.LogsBefore(ctx, j.ID, tt.step, tt.before, tt.limit)
		if err != nil {
			t.Errorf("LogsBefore(step %d, before %d, limit %d) = %v", tt.step, tt.before, tt.limit, err)
			continue
		}
		if diff := cmp.Diff(tt.want, seqs(got), opts...); diff != "" {
			t.Errorf("LogsBefore(step %d, before %d, limit %d) seqs (-want +got):\n%s", tt.step, tt.before, tt.limit, diff)
		}
	}
	got, err := s.LogsBefore(ctx, j.ID, -1, 0, 100)
	if err != nil {
		t.Fatalf("LogsBefore() = %v", err)
	}
	if diff := cmp.Diff(all, got, opts...); diff != "" {
		t.Errorf("LogsBefore(all) (-appended +got):\n%s", diff)
	}
}
