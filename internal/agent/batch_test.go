package agent

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/engine"
)

// A steady trickle of lines must not hold output back until the batch is
// full or the job ends: the batcher sends what it has every interval. (How
// late a line is, is measured by BenchmarkWebLogLatency, not here: a test
// cannot time on a loaded machine.)
func TestBatcherTrickle(t *testing.T) {
	t.Parallel()
	const interval = 50 * time.Millisecond
	var mu sync.Mutex
	sent, batches := 0, 0
	b := newBatcher(interval, 1<<20, func(evs []engine.Event) {
		mu.Lock()
		defer mu.Unlock()
		sent += len(evs)
		batches++
	})
	start := time.Now()
	for i := 0; i < 30; i++ {
		b.add(engine.Event{Type: engine.Log, Time: time.Now(), Data: []byte("line\n")})
		time.Sleep(20 * time.Millisecond)
	}
	// However slow the machine, the trickle lasted many intervals: some
	// of it must have been sent while it ran.
	took := time.Since(start)
	mu.Lock()
	sentBefore, batchesBefore := sent, batches
	mu.Unlock()
	b.close()
	mu.Lock()
	defer mu.Unlock()
	if sent != 30 {
		t.Errorf("sent %d events, want 30", sent)
	}
	if batchesBefore < 2 || sentBefore == 0 {
		t.Errorf("before the end, %d lines went in %d batches over %v (%d intervals); want them sent as they came, every %v",
			sentBefore, batchesBefore, took, took/interval, interval)
	}
}

// TestBatcherFlushesOnSizeAndSteps: a step's start and a full batch wait
// until the server took them (the first is the server's last word on the
// lease before the step runs, the second holds back output the server
// cannot keep up with); a step's end goes at once without holding up the
// job; close waits for everything; and batches arrive in order.
func TestBatcherFlushesOnSizeAndSteps(t *testing.T) {
	t.Parallel()
	var batches [][]engine.Event
	var mu sync.Mutex
	release := make(chan struct{})
	b := newBatcher(time.Hour, 10, func(evs []engine.Event) {
		<-release // a slow server
		mu.Lock()
		batches = append(batches, evs)
		mu.Unlock()
	})
	// waits runs add (or close) and reports whether it waited for the
	// server: it must not return while the send is held, and must return
	// once it is let go.
	waits := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			f()
			close(done)
		}()
		select {
		case <-done:
			t.Fatalf("%s returned while the server had not taken it", what)
		case <-time.After(50 * time.Millisecond):
		}
		release <- struct{}{}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits after the server took it", what)
		}
	}
	waits("add of a step start", func() { b.add(engine.Event{Type: engine.StepStarted, StepIndex: 0}) })
	data := []byte("0123456789\n")
	waits("add of a full batch", func() { b.add(engine.Event{Type: engine.Log, Data: data}) })
	data[0] = 'X' // the batcher copied it

	// A step's end does not wait, even for a server that holds it...
	added := make(chan struct{})
	go func() {
		b.add(engine.Event{Type: engine.StepFinished, StepIndex: 0})
		close(added)
	}()
	select {
	case <-added:
	case <-time.After(10 * time.Second):
		t.Fatal("add of a step end waited for the server")
	}
	// ...but close waits for it.
	waits("close", b.close)
	close(release)

	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, batch := range batches {
		for _, ev := range batch {
			got = append(got, fmt.Sprintf("%s/%d", ev.Type, ev.StepIndex))
		}
	}
	want := []string{"step.started/0", "log/0", "step.finished/0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %v, want %v in that order", got, want)
	}
	if len(batches) > 1 && string(batches[1][0].Data) != "0123456789\n" {
		t.Errorf("log data = %q, want the bytes as they were when added", batches[1][0].Data)
	}
}
