package engine_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/backend/local"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
)

// The engine's share of the figures `go run ./bench` measures for the whole
// of `gantry run`. Each benchmark that runs steps has a "sh" sub-benchmark
// doing the same number of `sh -c ...` runs straight from Go, so that
//
//	go test -run '^$' -bench . ./internal/engine
//
// shows what the engine adds on top of starting the shells.

// benchPlan parses src and plans it for a push to main.
func benchPlan(b *testing.B, src string) *plan.Plan {
	b.Helper()
	p, err := spec.Parse("bench.yml", []byte(src))
	if err != nil {
		b.Fatalf("Parse: %v", err)
	}
	return plan.New(p, plan.Trigger{Event: plan.EventPush, Branch: "main", Commit: "abc123", Repo: "acme/web"})
}

func benchEngine(b *testing.B) *engine.Engine {
	return engine.New(local.New(local.Options{}), engine.Options{Workspace: b.TempDir()})
}

// benchSteps is a one-job pipeline of n steps running script.
func benchSteps(n int, script string) string {
	var s strings.Builder
	s.WriteString("jobs:\n  job:\n    steps:\n")
	for range n {
		fmt.Fprintf(&s, "      - %q\n", script)
	}
	return s.String()
}

func benchRun(b *testing.B, eng *engine.Engine, p *plan.Plan, sink func(engine.Event)) {
	res := eng.Run(b.Context(), p, sink)
	if res.Status != engine.Success {
		b.Fatalf("Run = %s, want success: %+v", res.Status, res.Jobs[0])
	}
}

func shLoop(b *testing.B, n int, script string) {
	for range n {
		if err := exec.Command("sh", "-c", script).Run(); err != nil {
			b.Fatalf("sh -c %s: %v", script, err)
		}
	}
}

func discardEvents(engine.Event) {}

// BenchmarkSequentialSteps runs a job of 100 `true` steps; ns/step is the
// cost of one step including its shell, and the "sh" sub-benchmark the cost
// of the shell alone.
func BenchmarkSequentialSteps(b *testing.B) {
	const steps = 100
	b.Run("engine", func(b *testing.B) {
		p := benchPlan(b, benchSteps(steps, "true"))
		eng := benchEngine(b)
		for b.Loop() {
			benchRun(b, eng, p, discardEvents)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*steps), "ns/step")
	})
	b.Run("sh", func(b *testing.B) {
		for b.Loop() {
			shLoop(b, steps, "true")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*steps), "ns/step")
	})
}

// BenchmarkFixedCost runs a 1-step pipeline the way `gantry run` does, from
// parsing the file to the last event, less the process start-up of gantry
// itself; "sh" is the step's shell alone.
func BenchmarkFixedCost(b *testing.B) {
	src := []byte(benchSteps(1, "true"))
	b.Run("engine", func(b *testing.B) {
		ws := b.TempDir()
		for b.Loop() {
			p, err := spec.Parse("bench.yml", src)
			if err != nil {
				b.Fatalf("Parse: %v", err)
			}
			eng := engine.New(local.New(local.Options{}), engine.Options{Workspace: ws})
			benchRun(b, eng, plan.New(p, plan.Trigger{Event: plan.EventPush, Branch: "main"}), discardEvents)
		}
	})
	b.Run("sh", func(b *testing.B) {
		for b.Loop() {
			shLoop(b, 1, "true")
		}
	})
}

// prefixSink is a sink like the console's: it writes every log line with
// its "[job/step] " prefix, buffered, to io.Discard, and counts the lines.
type prefixSink struct {
	w      *bufio.Writer
	prefix []byte
	lines  int
}

func (s *prefixSink) event(ev engine.Event) {
	if ev.Type != engine.Log {
		return
	}
	if s.prefix == nil {
		s.prefix = []byte("[" + ev.Job + "/" + ev.Step + "] ")
	}
	data := ev.Data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n') // Data is whole lines
		s.w.Write(s.prefix)
		s.w.Write(data[:i+1])
		data = data[i+1:]
		s.lines++
	}
}

// BenchmarkLogThroughput runs one step printing a million lines through a
// prefixing sink. MB/s counts the step's output; "sh" is the same command
// with its output thrown away, the floor for any log pipeline.
func BenchmarkLogThroughput(b *testing.B) {
	const lines = 1_000_000
	script := fmt.Sprintf("seq 1 %d", lines)
	size := seqBytes(lines)
	b.Run("engine", func(b *testing.B) {
		p := benchPlan(b, benchSteps(1, script))
		eng := benchEngine(b)
		b.SetBytes(size)
		for b.Loop() {
			s := &prefixSink{w: bufio.NewWriterSize(io.Discard, 64<<10)}
			benchRun(b, eng, p, s.event)
			s.w.Flush()
			if s.lines != lines {
				b.Fatalf("sink saw %d lines, want %d", s.lines, lines)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
	})
	b.Run("sh", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			shLoop(b, 1, script+" >/dev/null")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
	})
}

// seqBytes is the size of the output of `seq 1 n`.
func seqBytes(n int) int64 {
	var size int64
	for digits, lo := int64(1), 1; lo <= n; digits, lo = digits+1, lo*10 {
		hi := min(lo*10-1, n)
		size += int64(hi-lo+1) * (digits + 1)
	}
	return size
}
