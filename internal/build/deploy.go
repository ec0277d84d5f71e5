package build

import (
	"fmt"
	"time"

	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// Deployment returns the build, not yet stored, that deploys the release
// made by build rel (read with its pipeline) to env under the release's
// version: event deploy, rel's commit, branch, tag and pipeline file, and
// the jobs of plan.New for it, queued. requestedBy becomes its author. It
// fails when the pipeline no longer parses or has no environment env.
func Deployment(rel *store.Build, env, version, requestedBy string) (*store.Build, error) {
	p, err := spec.Parse(PipelineFile, rel.Pipeline)
	if err != nil {
		return nil, fmt.Errorf("the pipeline of build %d: %w", rel.ID, err)
	}
	if plan.Environment(p, env) == nil {
		return nil, fmt.Errorf("the pipeline of build %d has no environment %q", rel.ID, env)
	}
	b := &store.Build{
		RepoID: rel.RepoID, Repo: rel.Repo, Status: store.StatusQueued, Event: plan.EventDeploy,
		Branch: rel.Branch, Tag: rel.Tag, Commit: rel.Commit, Pipeline: rel.Pipeline,
		Title: fmt.Sprintf("deploy %s to %s", version, env), Author: requestedBy,
		Environment: env, Release: version,
	}
	pl := plan.New(p, TriggerOf(b))
	for i, j := range pl.Jobs {
		b.Jobs = append(b.Jobs, &store.Job{Name: j.Name, Position: i, Status: store.StatusPending, RunsOn: j.RunsOn,
			Locks: j.Locks, ExitCode: -1})
	}
	advance(b, pl, time.Now())
	return b, nil
}
