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

func TestBatcherFlushesOnSizeAndSteps(t *testing.T) {
	t.Parallel()
	var batches [][]engine.Event
	var mu sync.Mutex
	release := make(chan struct{})
	sent := make(chan struct{}, 10)
	b := newBatcher(time.Hour, 10, func(evs []engine.Event) {
		<-release // a slow server
		mu.Lock()
		batches = append(batches, evs)
		mu.Unlock()
		sent <- struct{}{}
	})
	// A step's start goes at once, without the step waiting for it.
	added := make(chan struct{})
	go func() {
		b.add(engine.Event{Type: engine.StepStarted, StepIndex: 0})
		close(added)
	}()
	select {
	case <-added:
	case <-time.After(10 * time.Second):
		t.Fatal("add of a step start waited for the server")
	}
	release <- struct{}{}
	<-sent
	// A full batch makes the job wait until it is sent.
	data := []byte("0123456789\n")
	added = make(chan struct{})
	go func() {
		b.add(engine.Event{Type: engine.Log, Data: data})
		close(added)
	}()
	select {
	case <-added:
		t.Fatal("add of a full batch returned before the batch was sent")
	case <-time.After(50 * time.Millisecond):
	}
	release <- struct{}{}
	<-sent
	<-added
	data[0] = 'X' // the batcher copied it
	b.add(engine.Event{Type: engine.StepFinished, StepIndex: 0})
	b.add(engine.Event{Type: engine.StepStarted, StepIndex: 1})
	close(release)
	b.close()

	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, batch := range batches {
		for _, ev := range batch {
			got = append(got, fmt.Sprintf("%s/%d", ev.Type, ev.StepIndex))
		}
	}
	want := []string{"step.started/0", "log/0", "step.finished/0", "step.started/1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %v, want %v in that order", got, want)
	}
	if got := string(batches[1][0].Data); got != "0123456789\n" {
		t.Errorf("log data = %q, want the bytes as they were when added", got)
	}
}
