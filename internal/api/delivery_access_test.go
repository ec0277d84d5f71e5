package api_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store"
)

// deliveryPipeline is the pipeline of the releases the role test makes.
const deliveryPipeline = `
jobs:
  build: {steps: [make], artifacts: [dist/app]}
environments:
  staging:
    deploy: {branch: main}
    steps: ["./deploy staging"]
  production:
    promote-from: staging
    steps: ["./deploy production"]
  guarded:
    approvals: {required: 2}
    steps: ["./deploy guarded"]
`

// released makes a green build of acme/web with deliveryPipeline, an
// artifact dist/app whose bytes are in the handler's artifact store, and
// its release of version; it returns the release.
func released(e *accessEnv, version string) *store.Release {
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	web, err := e.st.Repo(ctx, "acme/web")
	must(err)
	b := &store.Build{RepoID: web.ID, Status: store.StatusQueued, Event: "push", Branch: "main",
		Commit: "0123456789abcdef0123456789abcdef01234567", Pipeline: []byte(deliveryPipeline),
		Jobs: []*store.Job{{Name: "build", Status: store.StatusQueued, ExitCode: -1}}}
	must(e.st.CreateBuild(ctx, b))
	var job *store.Job
	for job == nil { // the queue hands out older jobs first
		_, j, err := e.st.Lease(ctx, "agent", nil, time.Hour)
		must(err)
		if j.BuildID == b.ID {
			job = j
		}
	}
	_, _, err = e.h.Artifacts.Put(strings.NewReader("the app "+version), "", func(sum string, size int64) error {
		return e.st.AddArtifact(ctx, &store.Artifact{BuildID: b.ID, JobID: job.ID, Path: "dist/app", Size: size, Mode: 0o755, SHA256: sum}, job.LeaseToken)
	})
	must(err)
	must(e.st.Update(ctx, b.ID, func(b *store.Build) error {
		b.Status, b.Jobs[0].Status, b.FinishedAt = store.StatusSuccess, store.StatusSuccess, time.Now()
		return nil
	}))
	rel := &store.Release{RepoID: web.ID, Version: version, BuildID: b.ID, Commit: b.Commit, Branch: "main"}
	must(e.st.CreateRelease(ctx, rel, []string{"staging", "production", "guarded"}, nil))
	return rel
}

// succeeded records that rel succeeded in env.
func succeeded(e *accessEnv, rel *store.Release, env string) {
	ctx := context.Background()
	d := &store.Deployment{RepoID: rel.RepoID, Environment: env, ReleaseID: rel.ID, Kind: "deploy", State: store.DeployPending}
	err := e.st.CreateDeployment(ctx, d)
	if err == nil {
		err = e.st.StartDeployment(ctx, d.ID, &store.Build{RepoID: rel.RepoID, Status: store.StatusSuccess, Event: "deploy",
			Environment: env, Release: rel.Version, FinishedAt: time.Now()})
	}
	if err == nil {
		_, err = e.st.EndDeployment(ctx, d.ID, store.DeploySucceeded, "")
	}
	if err != nil && !errors.Is(err, store.ErrConflict) {
		panic(err)
	}
}

// guarded records a deployment of a new release to guarded, which waits
// for approvals, requested by root; it returns its ID.
func guarded(e *accessEnv) int64 {
	rel := released(e, "v1")
	d := &store.Deployment{RepoID: rel.RepoID, Environment: "guarded", ReleaseID: rel.ID, Kind: "deploy", RequestedBy: "root", State: store.DeployPending}
	if err := e.st.CreateDeployment(context.Background(), d); err != nil {
		panic(err)
	}
	return d.ID
}

// deliveryCases are the role test's cases for the delivery routes: the
// method, path and body of a request, and the weakest of people allowed.
var deliveryCases = map[string]func(e *accessEnv) (string, string, any, string){
	"GET /api/v1/builds/{id}/artifacts": func(e *accessEnv) (string, string, any, string) {
		rel := released(e, "v1")
		return "GET", fmt.Sprintf("/api/v1/builds/%d/artifacts", rel.BuildID), nil, "viewer"
	},
	"GET /api/v1/builds/{id}/artifacts/{path...}": func(e *accessEnv) (string, string, any, string) {
		rel := released(e, "v1")
		return "GET", fmt.Sprintf("/api/v1/builds/%d/artifacts/dist/app", rel.BuildID), nil, "viewer"
	},
	"GET /api/v1/releases": func(e *accessEnv) (string, string, any, string) {
		released(e, "v1")
		return "GET", "/api/v1/releases?repo=acme/web", nil, "viewer"
	},
	"GET /api/v1/releases/{version...}": func(e *accessEnv) (string, string, any, string) {
		released(e, "release/v1")
		return "GET", "/api/v1/releases/release/v1?repo=acme/web", nil, "viewer"
	},
	"GET /api/v1/environments": func(e *accessEnv) (string, string, any, string) {
		succeeded(e, released(e, "v1"), "staging")
		return "GET", "/api/v1/environments?repo=acme/web", nil, "viewer"
	},
	"GET /api/v1/deployments": func(e *accessEnv) (string, string, any, string) {
		succeeded(e, released(e, "v1"), "staging")
		return "GET", "/api/v1/deployments?repo=acme/web&environment=staging", nil, "viewer"
	},
	"POST /api/v1/deployments": func(e *accessEnv) (string, string, any, string) {
		released(e, "v1")
		return "POST", "/api/v1/deployments", api.DeployRequest{Repo: "acme/web", Environment: "staging", Release: "v1"}, "developer"
	},
	"POST /api/v1/promotions": func(e *accessEnv) (string, string, any, string) {
		succeeded(e, released(e, "v1"), "staging")
		return "POST", "/api/v1/promotions", api.PromoteRequest{Repo: "acme/web", From: "staging", To: "production"}, "developer"
	},
	"POST /api/v1/deployments/{id}/approve": func(e *accessEnv) (string, string, any, string) {
		return "POST", fmt.Sprintf("/api/v1/deployments/%d/approve", guarded(e)), api.Decision{Comment: "fine"}, "developer"
	},
	"POST /api/v1/deployments/{id}/reject": func(e *accessEnv) (string, string, any, string) {
		return "POST", fmt.Sprintf("/api/v1/deployments/%d/reject", guarded(e)), api.Decision{Comment: "no"}, "developer"
	},
	"GET /api/v1/freezes": func(e *accessEnv) (string, string, any, string) {
		return "GET", "/api/v1/freezes?repo=acme/web", nil, "viewer"
	},
	"POST /api/v1/freezes": func(e *accessEnv) (string, string, any, string) {
		return "POST", "/api/v1/freezes", api.FreezeRequest{Repo: "acme/web", Environment: "production",
			Until: time.Now().Add(time.Hour), Reason: "the migration"}, "admin"
	},
	"DELETE /api/v1/freezes/{id}": func(e *accessEnv) (string, string, any, string) {
		web, err := e.st.Repo(context.Background(), "acme/web")
		if err != nil {
			panic(err)
		}
		f := &store.Freeze{RepoID: web.ID, Environment: "production", Since: time.Now(), Until: time.Now().Add(time.Hour),
			Reason: "the migration", CreatedBy: "root"}
		if err := e.st.CreateFreeze(context.Background(), f); err != nil {
			panic(err)
		}
		return "DELETE", fmt.Sprintf("/api/v1/freezes/%d", f.ID), nil, "admin"
	},
	"POST /api/v1/rollbacks": func(e *accessEnv) (string, string, any, string) {
		succeeded(e, released(e, "v1"), "staging")
		succeeded(e, released(e, "v2"), "staging")
		return "POST", "/api/v1/rollbacks", api.RollbackRequest{Repo: "acme/web", Environment: "staging"}, "developer"
	},
}
