// Package logstream tells live readers that something changed: a build's
// state, or new log output of a job. Messages carry only what changed, not
// the data: a reader then reads the store, so a slow reader that misses a
// message misses nothing but a wake-up.
package logstream

import "sync"

// Message says what changed.
type Message struct {
	// Kind is "build" (its state changed) or "log" (a job has new output).
	Kind    string
	BuildID int64
	JobID   int64
	// Snapshot, on "build", is the build as it was when it changed, so a
	// subscriber sees every state in turn rather than only the latest.
	Snapshot any
}

// Broker fans messages out to subscribers. The zero value is ready to use.
type Broker struct {
	mu   sync.Mutex
	subs map[chan Message]struct{}
}

// Subscribe returns a channel of messages and a function that ends the
// subscription. A subscriber that does not keep up loses messages, never
// blocks the publisher.
func (b *Broker) Subscribe() (<-chan Message, func()) {
	ch := make(chan Message, 256)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[chan Message]struct{}{}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

// Publish sends m to every subscriber that has room for it.
func (b *Broker) Publish(m Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- m:
		default:
		}
	}
}
