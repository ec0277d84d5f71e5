package notify_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/google/go-cmp/cmp"
)

func TestParseEvents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{[]string{"build.finished", "deployment.*"}, []string{"build.finished", "deployment.*"}, ""},
		{[]string{" build.* ", "build.*", ""}, []string{"build.*"}, ""},
		{[]string{"*"}, []string{"*"}, ""},
		{[]string{"deployment.approval_required"}, []string{"deployment.approval_required"}, ""},
		{[]string{"build.finish"}, nil, `unknown event "build.finish": want one of build.created, build.started, build.finished, build.failed, build.fixed, deployment.created, deployment.approval_required, deployment.started, deployment.finished, or a glob such as build.* or deployment.*`},
		{[]string{"build.finished", "push"}, nil, `unknown event "push"`},
		{[]string{"build.[a"}, nil, `event "build.[a" is not a valid glob`},
		{nil, nil, "no events"},
		{[]string{" "}, nil, "no events"},
	} {
		got, err := notify.ParseEvents(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("ParseEvents(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("ParseEvents(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if !notify.Subscribed([]string{"deployment.*", "build.finished"}, "build.finished") ||
		notify.Subscribed([]string{"deployment.*"}, "build.finished") || !notify.Subscribed([]string{"*"}, "build.fixed") {
		t.Errorf("Subscribed does not match globs")
	}
}

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	// HMAC-SHA256 of "hello" keyed with "secret", as any tool computes it.
	const want = "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b"
	if got := notify.Sign("secret", []byte("hello")); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if err := notify.Verify("secret", []byte("hello"), want); err != nil {
		t.Errorf("Verify(good) = %v", err)
	}
	if err := notify.Verify("secret", []byte("hello!"), want); err == nil {
		t.Errorf("Verify(tampered body) = nil")
	}
	if err := notify.Verify("other", []byte("hello"), want); err == nil {
		t.Errorf("Verify(other secret) = nil")
	}
}

func TestBadge(t *testing.T) {
	t.Parallel()
	for status, word := range map[string]string{store.StatusSuccess: "passing", store.StatusFailure: "failing", store.StatusError: "error", "": "unknown", store.StatusCancelled: "unknown"} {
		svg := notify.Badge(status)
		var doc struct {
			XMLName xml.Name
			Title   string `xml:"title"`
		}
		if err := xml.Unmarshal(svg, &doc); err != nil || doc.XMLName.Local != "svg" {
			t.Errorf("Badge(%q) is not SVG: %v\n%s", status, err, svg)
		}
		if doc.Title != "build: "+word {
			t.Errorf("Badge(%q) title = %q, want %q", status, doc.Title, "build: "+word)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, format, want string }{
		{"https://user:pw@hooks.example.com/in?token=x", store.HookJSON, "https://hooks.example.com/in?…"},
		{"https://hooks.example.com/in", store.HookJSON, "https://hooks.example.com/in"},
		{"https://hooks.slack.com/services/T0/B0/XXXX", store.HookSlack, "https://hooks.slack.com/…"},
		{"not a url", store.HookJSON, "(invalid URL)"},
	} {
		if got := notify.Redact(tc.url, tc.format); got != tc.want {
			t.Errorf("Redact(%q, %s) = %q, want %q", tc.url, tc.format, got, tc.want)
		}
	}
}
