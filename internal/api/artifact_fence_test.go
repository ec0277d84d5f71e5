package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
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

// An artifact bigger than the server allows is refused with 413, and
// nothing of it is kept.
func TestArtifactTooBig(t *testing.T) {
	origin, _ := gitOrigin(t)
	e := newAccessEnv(t, origin)
	e.h.MaxArtifactSize = 8
	ctx := t.Context()
	const secret = "agent-secret-for-the-size-test"
	if err := e.st.CreateToken(ctx, &store.Token{Name: "agents", Hash: api.HashToken(secret), Kind: store.TokenAgent}); err != nil {
		t.Fatal(err)
	}
	c := &api.Client{Server: e.url, Token: secret, Agent: true}
	var l api.Lease
	if code, err := c.Do(ctx, "POST", "/api/v1/agent/lease", api.LeaseRequest{Name: "host", Capacity: 1}, &l); err != nil || code != 200 {
		t.Fatalf("lease = %d %v, want a job", code, err)
	}
	ref := api.LeaseRef{BuildID: l.BuildID, JobID: l.JobID, Token: l.Token, Key: l.Key}
	data := "nine byte"
	sum := sha256.Sum256([]byte(data))
	for _, size := range []int64{int64(len(data)), -1} { // told, and not told, the size
		_, err := c.PutArtifact(ctx, ref, "dist/app", 0o644, hex.EncodeToString(sum[:]), size, strings.NewReader(data))
		if status(err) != 413 || !strings.Contains(err.Error(), "larger than 8 bytes") {
			t.Errorf("upload of 9 bytes (size %d) with a limit of 8 = %v, want 413 saying the limit", size, err)
		}
	}
	if arts, err := e.st.Artifacts(ctx, l.BuildID); err != nil || len(arts) != 0 {
		t.Errorf("artifacts after refused uploads = %v, %v; want none", arts, err)
	}
	// Within the limit it is kept.
	small := "eight by"
	sum = sha256.Sum256([]byte(small))
	if _, err := c.PutArtifact(ctx, ref, "dist/app", 0o644, hex.EncodeToString(sum[:]), int64(len(small)), strings.NewReader(small)); err != nil {
		t.Errorf("upload of 8 bytes = %v", err)
	}
}
