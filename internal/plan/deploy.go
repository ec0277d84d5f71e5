package plan

import (
	"slices"

	"github.com/gantry-ci/gantry/internal/spec"
)

// HealthStep is the name of a deployment's last step when its
// environment has a health check: the check.
const HealthStep = "health"

// DeployJob is the name of the job that deploys to env.
func DeployJob(env string) string { return "deploy:" + env }

// Environment returns the environment of p called name, or nil.
func Environment(p *spec.Pipeline, name string) *spec.Environment {
	for _, e := range p.Environments {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// deploy is the plan of a deployment to t.Environment: one job, named by
// DeployJob, that runs the environment's steps with its runs-on, image,
// env, secrets and timeout, under the pipeline's env, then, when the
// environment has a health check, a last step named HealthStep that runs
// it. Concurrency limits
// do not hold it back: a deployment waits only for the one before it in
// its environment. An environment the pipeline lacks gives a plan
// without jobs.
func deploy(p *spec.Pipeline, t Trigger) *Plan {
	pl := &Plan{Trigger: t, Env: p.Env}
	e := Environment(p, t.Environment)
	if e == nil {
		return pl
	}
	steps := e.Steps
	if e.Health != nil {
		steps = append(slices.Clip(steps), &spec.Step{Name: HealthStep, Health: e.Health})
	}
	pl.Jobs = []*Job{{
		Name: DeployJob(e.Name), Base: DeployJob(e.Name), RunsOn: e.RunsOn, Image: e.Image,
		Secrets: e.Secrets, Env: e.Env, Timeout: e.Timeout, Steps: steps,
	}}
	return pl
}
