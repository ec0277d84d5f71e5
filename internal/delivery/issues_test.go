package delivery_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/store"
)

// TestReleaseIssues: a release records the issue keys its commits name,
// those since the previous release of its branch; the first release, the
// keys of its own commit.
func TestReleaseIssues(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	say := func(msg string) string {
		git1(t, e.origin, "-c", "user.name=Ann", "-c", "user.email=ann@example.com", "commit", "-q", "--allow-empty", "-m", msg)
		return git1(t, e.origin, "rev-parse", "HEAD")
	}
	e.commit("Ann <ann@example.com>", pipeline)
	first := say("OPS-1: the first feature")
	e.push("main", first)
	e.runJobs(engine.Success)
	say("OPS-2: fix the frobnicator\n\nCloses #12; UTF-8 is not an issue.")
	say("Refactor, no issue")
	third := say("OPS-3 and OPS-2 again")
	e.push("main", third)
	e.runJobs(engine.Success)
	rels := map[string][]string{}
	list, err := e.st.ListReleases(e.ctx, store.ReleaseFilter{Repo: "acme/app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		rels[r.Version] = r.Issues
	}
	want := map[string][]string{"main-1": {"OPS-1"}, "main-3": {"#12", "OPS-2", "OPS-3"}}
	if diff := cmp.Diff(want, rels); diff != "" {
		t.Errorf("issues of the releases (-want +got):\n%s", diff)
	}
}
