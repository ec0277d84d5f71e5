package issue_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/issue"
	"github.com/google/go-cmp/cmp"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"feature/ABC-123-login"}, []string{"ABC-123"}},
		{[]string{"ABC-123", "Fix the login (ABC-123, OPS-7)\n\nCloses #42 and #7."}, []string{"ABC-123", "OPS-7", "#42", "#7"}},
		{[]string{"PROJ2-1: B2B-9"}, []string{"PROJ2-1", "B2B-9"}},
		{[]string{"[ABC-1][abc-2] ABC-3,ABC-4;#5"}, []string{"ABC-1", "ABC-3", "ABC-4", "#5"}},
		{[]string{"fixes #12, refs: #13"}, []string{"#12", "#13"}},
		// Not keys: inside words or numbers, lowercase, zero, too long.
		{[]string{"xABC-123 ABC-123x ABC-12-3 ABC-1.5 a#1 &#123; owner/repo#9 #12.5 A-1 abc-1 ABC-0 #0 ABC- ABC-x"}, nil},
		{[]string{"ABCDEFGHIJK-1 ABC-1234567890 #1234567890"}, nil},
		// Standards, encodings and algorithms are not projects.
		{[]string{"UTF-8, SHA-256, ISO-8601, CVE-2024-12345, RFC-7231, HTTP-2, MD-5, TLS-1"}, nil},
		{[]string{"ABC-1 ABC-1 #1 #1"}, []string{"ABC-1", "#1"}},
		{[]string{"ü ABC-1 é#2"}, []string{"ABC-1"}},
		{nil, nil},
	} {
		if diff := cmp.Diff(tc.want, issue.Keys(tc.in...)); diff != "" {
			t.Errorf("Keys(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	many := strings.Repeat("#1 ", 3) + func() string {
		var b strings.Builder
		for i := 1; i <= 200; i++ {
			b.WriteString("AB-")
			b.WriteString(strings.Repeat("1", 1) + string(rune('0'+i%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i/100)) + " ")
		}
		return b.String()
	}()
	if got := issue.Keys(many); len(got) != issue.MaxKeys {
		t.Errorf("Keys of 200 keys = %d keys, want %d", len(got), issue.MaxKeys)
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{"ABC-123": true, "#42": true, "abc-123": false, "ABC-123 ": false, "UTF-8": false,
		"": false, "#": false, "ABC": false, " #1": false, "ABC-1-2": false} {
		if got := issue.Valid(in); got != want {
			t.Errorf("Valid(%q) = %v, want %v", in, got, want)
		}
	}
}

var keyPattern = regexp.MustCompile(`^(#[1-9][0-9]{0,8}|[A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8})$`)

// Whatever the text: every key is one of the two forms, appears in the
// text, is Valid, and comes once; there are at most MaxKeys.
func FuzzKeys(f *testing.F) {
	for _, s := range []string{"feature/ABC-123-login", "Fix ABC-1 and #2\n\nCloses #3", "UTF-8 SHA-256", "&#123; a#1 #1.5",
		"ABC-1-2 ABC-01", "", "##1", "A-B-1", "ÄBC-1 ABC-1é"} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		keys := issue.Keys(a, b)
		if len(keys) > issue.MaxKeys {
			t.Fatalf("Keys = %d keys, more than %d", len(keys), issue.MaxKeys)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if !keyPattern.MatchString(k) || !issue.Valid(k) {
				t.Errorf("Keys(%q, %q) gave %q, not a key", a, b, k)
			}
			if !strings.Contains(a, k) && !strings.Contains(b, k) {
				t.Errorf("Keys(%q, %q) gave %q, which is in neither", a, b, k)
			}
			if seen[k] {
				t.Errorf("Keys(%q, %q) gave %q twice", a, b, k)
			}
			seen[k] = true
		}
		// Found alone, a key is found again.
		for _, k := range keys {
			if got := issue.Keys(k); len(got) != 1 || got[0] != k {
				t.Errorf("Keys(%q) = %q, want itself", k, got)
			}
		}
	})
}
