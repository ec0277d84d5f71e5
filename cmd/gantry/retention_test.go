package main

import (
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "1d": 24 * time.Hour, "12h": 12 * time.Hour,
		"2s": 2 * time.Second, "never": 0, "0": 0} {
		if got, err := parseRetention(in); err != nil || got != want {
			t.Errorf("parseRetention(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-1d", "d", "3x", "500ms", "-5h", "36501d", "1.5d"} {
		if got, err := parseRetention(in); err == nil {
			t.Errorf("parseRetention(%q) = %v, want an error", in, got)
		}
	}
}

// FuzzParseRetention: whatever it is given, parseRetention either refuses
// it or returns 0 (never) or at least a second.
func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"30d", "12h", "never", "0", "1s", "999999999999d", "-1h", "0.5s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseRetention(s)
		if err == nil && d != 0 && d < time.Second {
			t.Errorf("parseRetention(%q) = %v, below a second", s, d)
		}
		if err == nil && d < 0 {
			t.Errorf("parseRetention(%q) = %v, negative", s, d)
		}
	})
}
