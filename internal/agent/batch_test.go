package agent

import (
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

func TestBatcherFlushesOnSizeAndSteps(t *testing.T) {
	t.Parallel()
	var batches [][]engine.Event
	var mu sync.Mutex
	b := newBatcher(time.Hour, 10, func(evs []engine.Event) {
		mu.Lock()
		batches = append(batches, evs)
		mu.Unlock()
	})
	data := []byte("0123456789\n")
	b.add(engine.Event{Type: engine.StepStarted})
	b.add(engine.Event{Type: engine.Log, Data: data})
	data[0] = 'X' // the batcher copied it
	b.add(engine.Event{Type: engine.StepFinished})
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 3 {
		t.Fatalf("%d batches, want 3 (step start, a full batch, step end)", len(batches))
	}
	if got := string(batches[1][0].Data); got != "0123456789\n" {
		t.Errorf("log data = %q, want the bytes as they were when added", got)
	}
}
