package main

import (
	"math"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
)

func TestMedianPercentile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		xs          []float64
		median, p90 float64
	}{
		{[]float64{3}, 3, 3},
		{[]float64{4, 1}, 2.5, 4},
		{[]float64{5, 1, 3}, 3, 5},
		{[]float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 5.5, 9},
	}
	for _, tt := range tests {
		if got := median(tt.xs); got != tt.median {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.median)
		}
		if got := percentile(tt.xs, 90); got != tt.p90 {
			t.Errorf("percentile(%v, 90) = %v, want %v", tt.xs, got, tt.p90)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

func TestCheckLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		n        int
		wantErr  string // substring; empty for none
	}{
		{"gantry framing", "[job] job started\n[job] $ step\n[p] 1\n[p] 2\n[p] 3\n[job] ✓ step\n\nrun success in 1ms\n", 3, ""},
		{"missing last", "[p] 1\n[p] 2\n", 3, "2 prefixed lines, want 3"},
		{"out of order", "[p] 1\n[p] 3\n[p] 2\n", 3, `line 2: "[p] 3", want "[p] 2"`},
		{"extra", "[p] 1\n[p] 2\n", 1, "after the last expected line 1"},
		{"mangled", "[p] 1\n[p] 2x\n", 2, `line 2: "[p] 2x"`},
		{"unterminated last", "[p] 1\n[p] 2", 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkLines(strings.NewReader(tt.in), []byte("[p] "), tt.n)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkLines = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkLines = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// The pipelines the harness writes must be what it thinks they are.
func TestPipelines(t *testing.T) {
	t.Parallel()
	steps := map[string]int{"echo.yml": 1, "true1.yml": 1, "true100.yml": 100, "seq.yml": 1}
	for name, src := range pipelines {
		p, err := spec.Parse(name, []byte(src))
		if err != nil {
			t.Fatalf("Parse(%s) = %v", name, err)
		}
		pl := plan.New(p, plan.Trigger{Event: plan.EventPush, Branch: "main"})
		if len(pl.Jobs) != 1 || pl.Jobs[0].Name != "job" || len(pl.Jobs[0].Steps) != steps[name] {
			t.Fatalf("%s: plan has %d jobs, want one job \"job\" of %d steps", name, len(pl.Jobs), steps[name])
		}
		// gantry prefixes a log line with [job/step name].
		if name == "seq.yml" {
			if got := "[job/" + pl.Jobs[0].Steps[0].DisplayName() + "] "; got != logPrefix {
				t.Errorf("seq.yml lines would be prefixed %q, want %q", got, logPrefix)
			}
		}
	}
}

func TestThousands(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{1: "1", 999: "999", 1000: "1,000", 1000000: "1,000,000", 12345: "12,345"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
