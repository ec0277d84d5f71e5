package agent

import (
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/engine"
)

// A steady trickle of lines must not hold output back: every line is sent
// within the flush interval of being printed.
func TestBatcherTrickle(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	var mu sync.Mutex
	var worst time.Duration
	sent := 0
	b := newBatcher(interval, 1<<20, func(evs []engine.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			if d := time.Since(ev.Time); d > worst {
				worst = d
			}
			sent++
		}
	})
	for i := 0; i < 30; i++ {
		b.add(engine.Event{Type: engine.Log, Time: time.Now(), Data: []byte("line\n")})
		time.Sleep(20 * time.Millisecond)
	}
	b.close()
	mu.Lock()
	defer mu.Unlock()
	if sent != 30 {
		t.Errorf("sent %d events, want 30", sent)
	}
	if worst > interval+80*time.Millisecond {
		t.Errorf("a line waited %v to be sent, want at most about %v", worst, interval)
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
