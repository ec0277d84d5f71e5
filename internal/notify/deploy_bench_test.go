package notify_test

import (
	"testing"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/store"
)

// BenchmarkDeploymentChanged: what the delivery service's observer costs
// a deployment: a copy into the queue, never a wait. The notifier is not
// started, as when the database is away: the queue fills, and stays
// bounded.
func BenchmarkDeploymentChanged(b *testing.B) {
	n := notify.New(openStore(b), notify.Options{})
	c := delivery.Change{What: delivery.ChangeStarted, Deployment: store.Deployment{ID: 1, Repo: "acme/app", Environment: "production",
		State: store.DeployRunning}}
	b.ReportAllocs()
	for b.Loop() {
		n.DeploymentChanged(c)
	}
}
