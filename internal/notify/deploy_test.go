package notify_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/store"
)

// TestDeploymentStatus: a deployment reports under a context of its own,
// gantry/deploy/ENV, never under the build's: a failed deployment does not
// turn the commit's build red.
func TestDeploymentStatus(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(int, *request) (int, http.Header, string) {
		return 201, http.Header{"Content-Type": {"application/json"}}, `{"id":1}`
	})
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", f.URL)
	n := start(t, st, notify.Options{})
	b := &store.Build{RepoID: r.ID, Repo: r.Name, Status: store.StatusQueued, Event: "deploy", Branch: "main", Commit: sha,
		Environment: "staging", Release: "main-7", Pipeline: []byte("jobs: {}"),
		Jobs: []*store.Job{{Name: "deploy:staging", Status: store.StatusQueued, ExitCode: -1}}}
	if err := st.CreateBuild(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	n.Changed(b)
	n.Changed(set(b, store.StatusFailure, store.StatusFailure))
	// The queued status may be superseded by the final one before it is sent.
	waitFor(t, 5*time.Second, "the statuses", func() bool {
		return allFinal(t, st)() && len(deliveries(t, st, store.DeliveryFilter{})) == 2
	})
	got := lastByContext(t, f.requests(), "context")
	if len(got) != 1 || got["gantry/deploy/staging"]["state"] != "failure" ||
		got["gantry/deploy/staging"]["description"] != "Deployment of main-7 to staging failed" {
		t.Errorf("statuses by context = %v, want only gantry/deploy/staging, failed", got)
	}
}
