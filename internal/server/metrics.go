package server

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/gantry-ci/gantry/internal/store"
)

// metrics serves /metrics in the Prometheus text format. A handful of
// counters does not justify a client library and its start-up cost in a
// binary that also runs `gantry run`.
type metrics struct {
	store store.Store

	mu       sync.Mutex
	webhooks map[[2]string]int64 // forge, outcome
	// build durations, finished builds only
	durSum   float64
	durCount int64
}

func newMetrics(st store.Store) *metrics {
	return &metrics{store: st, webhooks: map[[2]string]int64{}}
}

func (m *metrics) webhook(forge, outcome string) {
	m.mu.Lock()
	m.webhooks[[2]string{forge, outcome}]++
	m.mu.Unlock()
}

func (m *metrics) buildFinished(b *store.Build) {
	if b.StartedAt.IsZero() || b.FinishedAt.IsZero() {
		return
	}
	m.mu.Lock()
	m.durSum += b.FinishedAt.Sub(b.StartedAt).Seconds()
	m.durCount++
	m.mu.Unlock()
}

func (m *metrics) serve(w http.ResponseWriter, r *http.Request) {
	counts, err := m.store.CountBuilds(r.Context())
	if err != nil {
		http.Error(w, "metrics unavailable", http.StatusServiceUnavailable)
		return
	}
	var b strings.Builder
	b.WriteString("# HELP gantry_queue_depth Builds waiting for an agent.\n# TYPE gantry_queue_depth gauge\n")
	fmt.Fprintf(&b, "gantry_queue_depth %d\n", counts[store.StatusQueued])
	b.WriteString("# HELP gantry_builds Builds by status.\n# TYPE gantry_builds gauge\n")
	for _, st := range []string{store.StatusQueued, store.StatusRunning, store.StatusSuccess, store.StatusFailure,
		store.StatusError, store.StatusCancelled, store.StatusSkipped} {
		fmt.Fprintf(&b, "gantry_builds{status=%q} %d\n", st, counts[st])
	}
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.webhooks))
	for k := range m.webhooks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	b.WriteString("# HELP gantry_webhooks_total Webhook deliveries by forge and outcome.\n# TYPE gantry_webhooks_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "gantry_webhooks_total{forge=%q,outcome=%q} %d\n", k[0], k[1], m.webhooks[k])
	}
	b.WriteString("# HELP gantry_build_duration_seconds Time from a build's first job start to its end.\n# TYPE gantry_build_duration_seconds summary\n")
	fmt.Fprintf(&b, "gantry_build_duration_seconds_sum %g\ngantry_build_duration_seconds_count %d\n", m.durSum, m.durCount)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write([]byte(b.String()))
}
