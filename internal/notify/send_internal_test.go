package notify

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// What each forge's documented rate-limit answers come to.
func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 5, 10, 55, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		code   int
		header http.Header
		body   string
		want   outcome
	}{
		{"created", 201, nil, `{}`, outcome{status: 201}},
		{"no content", 204, nil, ``, outcome{status: 204}},
		// GitHub's primary rate limit: x-ratelimit-remaining 0 until the
		// reset, in epoch seconds (and a second for clocks).
		{"github primary", 403, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1767610800"}},
			`{"message":"API rate limit exceeded"}`,
			outcome{status: 403, retry: true, hold: true, wait: 5*time.Minute + time.Second}},
		{"github primary 429", 429, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1767610800"}}, ``,
			outcome{status: 429, retry: true, hold: true, wait: 5*time.Minute + time.Second}},
		// GitHub's secondary rate limit: retry-after wins.
		{"github secondary", 403, http.Header{"Retry-After": {"60"}}, `{"message":"You have exceeded a secondary rate limit."}`,
			outcome{status: 403, retry: true, hold: true, wait: time.Minute}},
		// Without headers: at least a minute.
		{"github secondary bare", 403, nil, `{"message":"You have exceeded a secondary rate limit"}`,
			outcome{status: 403, retry: true, hold: true, wait: time.Minute}},
		// GitLab: Retry-After, RateLimit-Reset (epoch), RateLimit-ResetTime.
		{"gitlab", 429, http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {"1767610800"},
			"Ratelimit-Resettime": {"Mon, 05 Jan 2026 11:00:00 GMT"}, "Retry-After": {"30"}}, "Retry later",
			outcome{status: 429, retry: true, hold: true, wait: 30 * time.Second}},
		{"gitlab reset only", 429, http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {"1767610800"}}, "Retry later",
			outcome{status: 429, retry: true, hold: true, wait: 5*time.Minute + time.Second}},
		{"gitlab reset time only", 429, http.Header{"Ratelimit-Resettime": {"Mon, 05 Jan 2026 11:00:00 GMT"}}, "Retry later",
			outcome{status: 429, retry: true, hold: true, wait: 5*time.Minute + time.Second}},
		{"retry-after date", 429, http.Header{"Retry-After": {"Mon, 05 Jan 2026 10:56:00 GMT"}}, "",
			outcome{status: 429, retry: true, hold: true, wait: time.Minute}},
		{"retry-after too long", 429, http.Header{"Retry-After": {"999999"}}, "", outcome{status: 429, retry: true, hold: true, wait: time.Hour}},
		// Bitbucket: a bare 429.
		{"bitbucket", 429, nil, "Rate limit for this resource has been exceeded", outcome{status: 429, retry: true, hold: true, wait: time.Minute}},
		{"server error", 500, nil, "oops", outcome{status: 500, retry: true}},
		{"bad gateway", 502, nil, "", outcome{status: 502, retry: true}},
		{"unavailable with retry-after", 503, http.Header{"Retry-After": {"5"}}, "", outcome{status: 503, retry: true, hold: true, wait: 5 * time.Second}},
		{"request timeout", 408, nil, "", outcome{status: 408, retry: true}},
		// Not retried: the token is wrong, the commit unknown, the body bad.
		{"bad credentials", 401, nil, `{"message":"Bad credentials"}`, outcome{status: 401}},
		{"forbidden", 403, nil, `{"message":"Resource not accessible by integration"}`, outcome{status: 403}},
		{"not found", 404, nil, `{"message":"Not Found"}`, outcome{status: 404}},
		{"redirect", 301, http.Header{"Location": {"https://api.example.com/new?token=x"}}, "", outcome{status: 301}},
	} {
		resp := &http.Response{StatusCode: tc.code, Header: tc.header}
		if resp.Header == nil {
			resp.Header = http.Header{}
		}
		got := classify(resp, []byte(tc.body), now, 1)
		if (got.err == "") != (tc.code < 300) {
			t.Errorf("%s: err %q", tc.name, got.err)
		}
		got.err = ""
		if got != tc.want {
			t.Errorf("%s: classify = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// The error says what the receiver said, on one line, shortened.
	o := classify(&http.Response{StatusCode: 404, Header: http.Header{}}, []byte("{\n  \"message\": \"Not Found\"\n}"), now, 1)
	if o.err != `404 Not Found: { "message": "Not Found" }` {
		t.Errorf("err = %q", o.err)
	}
	o = classify(&http.Response{StatusCode: 500, Header: http.Header{}}, []byte(strings.Repeat("x", 5000)), now, 1)
	if len(o.err) > 350 {
		t.Errorf("err of a long body is %d bytes", len(o.err))
	}
	o = classify(&http.Response{StatusCode: 302, Header: http.Header{"Location": {"https://u:p@new.example.com/x?t=1"}}}, nil, now, 1)
	if o.err != "302 Found: redirected to https://new.example.com/x?…; set the URL it points to" {
		t.Errorf("redirect err = %q", o.err)
	}
	// A bare rate limit waits longer with each attempt, up to an hour.
	if o := classify(&http.Response{StatusCode: 429, Header: http.Header{}}, nil, now, 3); o.wait != 4*time.Minute {
		t.Errorf("third bare 429 waits %v, want 4m", o.wait)
	}
	if o := classify(&http.Response{StatusCode: 429, Header: http.Header{}}, nil, now, 30); o.wait != time.Hour {
		t.Errorf("30th bare 429 waits %v, want 1h", o.wait)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	n := New(nil, Options{Backoff: 10 * time.Second, MaxBackoff: 30 * time.Minute})
	for attempt, base := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 4: 80 * time.Second, 8: 1280 * time.Second, 9: 30 * time.Minute, 40: 30 * time.Minute} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := n.backoff(attempt)
			if d < base/2 || d > base {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, d, base/2, base)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d) took %d values in 200 tries: no jitter", attempt, len(seen))
		}
	}
}
