package api_test

import (
	"io"
	"testing"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store"
)

// An agent that holds the lease of an ordinary job cannot read the
// artifacts of a release some deployment build deploys by naming that
// build in its lease headers: the build ID is the caller's word, the
// lease binds only the job.
func TestAgentArtifactNeedsTheLeasedJobsOwnBuild(t *testing.T) {
	origin, _ := gitOrigin(t)
	e := newAccessEnv(t, origin)
	ctx := t.Context()
	rel := released(e, "v1")
	succeeded(e, rel, "staging")
	deps, err := e.st.Deployments(ctx, store.DeploymentFilter{Repo: "acme/web", Environment: "staging", Limit: 1})
	if err != nil || len(deps) != 1 || deps[0].BuildID == 0 {
		t.Fatalf("deployments = %v, %v; want one with a build", deps, err)
	}
	full, err := e.st.ReleaseByID(ctx, rel.ID)
	if err != nil || len(full.Artifacts) != 1 {
		t.Fatalf("release = %+v, %v; want one artifact", full, err)
	}

	// Another repo's ordinary build, leased by an agent.
	other, err := e.st.Repo(ctx, "acme/other")
	if err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: other.ID, Status: store.StatusQueued, Event: "push", Branch: "main",
		Commit: "0123456789abcdef0123456789abcdef01234567", Pipeline: []byte("jobs: {test: {steps: [\"true\"]}}\n"),
		Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1}}}
	if err := e.st.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	const secret = "agent-secret-for-the-fence-test"
	if err := e.st.CreateToken(ctx, &store.Token{Name: "agents", Hash: api.HashToken(secret), Kind: store.TokenAgent}); err != nil {
		t.Fatal(err)
	}
	c := &api.Client{Server: e.url, Token: secret, Agent: true}
	var l api.Lease
	code, err := c.Do(ctx, "POST", "/api/v1/agent/lease", api.LeaseRequest{Name: "evil", Capacity: 1}, &l)
	if err != nil || code != 200 || l.JobID == 0 {
		t.Fatalf("lease = %d %+v %v, want a job", code, l, err)
	}
	if l.BuildID == deps[0].BuildID {
		t.Fatalf("leased the deployment's own build %d", l.BuildID)
	}

	rc, err := c.AgentArtifact(ctx, api.LeaseRef{BuildID: deps[0].BuildID, JobID: l.JobID, Token: l.Token, Key: l.Key},
		full.Artifacts[0].ID)
	if err == nil {
		data, _ := io.ReadAll(rc)
		rc.Close()
		t.Fatalf("the artifact of another build's release was sent to a lease of build %d: %q", l.BuildID, data)
	}
	if status(err) != 409 {
		t.Errorf("AgentArtifact naming another build = %v, want 409", err)
	}
}
