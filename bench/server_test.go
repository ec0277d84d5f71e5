package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/github"
)

// The deliveries the harness sends must be what the server takes for a
// push of that commit to main, with the changed file listed, so that it
// runs no git command to find the changed paths.
func TestPushPayload(t *testing.T) {
	t.Parallel()
	commit, before := strings.Repeat("a", 40), strings.Repeat("b", 40)
	body, err := pushPayload(benchRepo, "/tmp/origin", commit, before, 7)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(body); n < 6000 || n > 12000 {
		t.Errorf("payload is %d bytes, want about 8 KB like GitHub's", n)
	}
	h := http.Header{}
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", "d1")
	events, err := github.Parse(h, body)
	if err != nil || len(events) != 1 {
		t.Fatalf("github.Parse = %v, %v; want one event", events, err)
	}
	ev := events[0]
	if ev.Kind != forge.Push || ev.Repo != benchRepo || ev.Branch != "main" || ev.Commit != commit || ev.Before != before ||
		!slices.Equal(ev.ChangedPaths, []string{"counter.txt"}) {
		t.Errorf("event = %+v, want a push of %s to main of %s changing counter.txt", ev, commit, benchRepo)
	}
}

func TestHookRequestSigned(t *testing.T) {
	t.Parallel()
	h := &serverHarness{url: "http://127.0.0.1:1", origin: "/tmp/origin"}
	req, err := h.hookRequest(strings.Repeat("c", 40), strings.Repeat("0", 40))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, req.ContentLength)
	if _, err := req.Body.Read(body); err != nil {
		t.Fatal(err)
	}
	if err := github.Verify(req.Header, body, benchSecret); err != nil {
		t.Errorf("github.Verify = %v, want nil", err)
	}
	req2, _ := h.hookRequest(strings.Repeat("c", 40), strings.Repeat("0", 40))
	if a, b := req.Header.Get("X-GitHub-Delivery"), req2.Header.Get("X-GitHub-Delivery"); a == b {
		t.Errorf("two deliveries share the ID %q", a)
	}
}

func TestKiB(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"21504 kB": 21504 << 10, "0 kB": 0, "": -1, "x kB": -1} {
		if got := kib(in); got != want {
			t.Errorf("kib(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestProcSelf(t *testing.T) {
	t.Parallel()
	st := procStatus(1 << 30) // no such process
	if len(st) != 0 {
		t.Errorf("procStatus of a missing process = %v, want empty", st)
	}
	busy, total := machineCPU()
	if total > 0 && (busy < 0 || busy > total) {
		t.Errorf("machineCPU = %v busy of %v", busy, total)
	}
	if d := procCPU(1 << 30); d != time.Duration(0) {
		t.Errorf("procCPU of a missing process = %v, want 0", d)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"/tmp/a b": `'/tmp/a b'`, "it's": `'it'\''s'`} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
