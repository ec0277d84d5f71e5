package web

import (
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

var (
	lineRe    = regexp.MustCompile(`<div class="l">([^<]*)</div>`)
	earlierRe = regexp.MustCompile(`<a class="earlier" href="([^"]+)"`)
)

// TestLogPagesWithoutJavaScript walks a long log back from its end by the
// "Earlier lines" links alone, as a browser without JavaScript would, and
// checks that every line shows up exactly once, in order, also across a
// chunk larger than a page.
func TestLogPagesWithoutJavaScript(t *testing.T) {
	t.Parallel()
	u := newUI(t, false)
	ctx := t.Context()
	repo := &store.Repo{Name: "acme/app", CloneURL: "https://example.com/acme/app.git", Forge: "github", WebhookSecret: "s", DefaultBranch: "main"}
	if err := u.st.CreateRepo(ctx, repo); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: repo.ID, Repo: repo.Name, Status: store.StatusQueued, Event: "push", Branch: "main", Commit: strings.Repeat("a", 40),
		Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1}}}
	if err := u.st.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	_, j, err := u.st.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// 1200 one-line chunks of step 0, one chunk of 1500 lines of step 1,
	// 300 one-line chunks of step 1: 3000 lines.
	var want []string
	var chunks []*store.LogChunk
	n := 0
	line := func() string { n++; s := fmt.Sprintf("line %d <&>", n); want = append(want, s); return s + "\n" }
	for range 1200 {
		chunks = append(chunks, &store.LogChunk{Step: 0, Data: []byte(line())})
	}
	var big strings.Builder
	for range 1500 {
		big.WriteString(line())
	}
	chunks = append(chunks, &store.LogChunk{Step: 1, Data: []byte(big.String())})
	for range 300 {
		chunks = append(chunks, &store.LogChunk{Step: 1, Data: []byte(line())})
	}
	if err := u.st.AppendLogs(ctx, j.ID, j.LeaseToken, chunks); err != nil {
		t.Fatal(err)
	}
	secret, _ := u.user("vera", store.RoleViewer)
	c := u.browser()
	u.signIn(c, secret, "/")

	var got []string
	path := fmt.Sprintf("/builds/%d?job=test", b.ID)
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("more than 5 pages for 3000 lines")
		}
		resp, body := u.get(c, path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		var page []string
		for _, m := range lineRe.FindAllStringSubmatch(body, -1) {
			page = append(page, html.UnescapeString(m[1]))
		}
		if len(page) > pageLines {
			t.Errorf("GET %s shows %d lines, want at most %d", path, len(page), pageLines)
		}
		got = append(page, got...)
		path = ""
		if m := earlierRe.FindStringSubmatch(body); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("walking the pages back shows %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d shows %q, want %q", i+1, got[i], want[i])
		}
	}
}
