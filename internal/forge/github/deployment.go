package github

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Deployment is a deployment of a release to an environment as GitHub's
// Deployments API records it.
type Deployment struct {
	// Repo is OWNER/NAME.
	Repo string
	// Commit is the full SHA deployed: the release's commit.
	Commit      string
	Environment string
	// Description is a short line: "main-7 to staging, requested by ann".
	Description string
	// Production marks the environment as one users reach (GitHub's
	// production_environment); false leaves GitHub's own default.
	Production bool
}

// The states of a deployment status, as GitHub's REST API names them.
const (
	DeployQueued     = "queued"
	DeployPending    = "pending"
	DeployInProgress = "in_progress"
	DeploySuccess    = "success"
	DeployFailure    = "failure"
	DeployError      = "error"
	DeployInactive   = "inactive"
)

// DeploymentStatus is one status of a deployment.
type DeploymentStatus struct {
	State       string
	Description string
	// LogURL links to the deployment's build page; EnvironmentURL to the
	// environment itself, when its pipeline names one.
	LogURL         string
	EnvironmentURL string
	Environment    string
}

var headers = map[string]string{"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": APIVersion}

// CreateDeployment makes the request "Create a deployment": POST
// /repos/{owner}/{repo}/deployments with ref (the commit's SHA, so GitHub
// records exactly what was deployed), environment, auto_merge false (a
// release is deployed as it is, never merged with the default branch
// first) and required_contexts [] (Gantry checked its build already: the
// release exists because it passed). GitHub answers 201 with the
// deployment, whose id names it in its statuses.
func CreateDeployment(apiURL string, d Deployment) (*forge.Request, error) {
	owner, name, ok := wire.SplitRepo(d.Repo)
	if !ok {
		return nil, fmt.Errorf("github deployment: repo %q is not OWNER/NAME", d.Repo)
	}
	u := fmt.Sprintf("%s/repos/%s/%s/deployments", strings.TrimSuffix(apiURL, "/"), url.PathEscape(owner), url.PathEscape(name))
	body := struct {
		Ref              string   `json:"ref"`
		Task             string   `json:"task"`
		AutoMerge        bool     `json:"auto_merge"`
		RequiredContexts []string `json:"required_contexts"`
		Environment      string   `json:"environment"`
		Description      string   `json:"description,omitempty"`
		Production       *bool    `json:"production_environment,omitempty"`
	}{Ref: d.Commit, Task: "deploy", AutoMerge: false, RequiredContexts: []string{}, Environment: d.Environment,
		Description: forge.Truncate(d.Description, 140)}
	if d.Production {
		body.Production = &d.Production
	}
	return wire.JSONRequest(u, body, headers)
}

// CreateDeploymentStatus makes the request "Create a deployment status":
// POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses, where
// deploymentsURL is the URL CreateDeployment posted to and id the
// deployment GitHub made. GitHub answers 201.
func CreateDeploymentStatus(deploymentsURL string, id int64, s DeploymentStatus) (*forge.Request, error) {
	u := strings.TrimSuffix(deploymentsURL, "/") + "/" + strconv.FormatInt(id, 10) + "/statuses"
	return wire.JSONRequest(u, struct {
		State          string `json:"state"`
		LogURL         string `json:"log_url,omitempty"`
		EnvironmentURL string `json:"environment_url,omitempty"`
		Description    string `json:"description,omitempty"`
		Environment    string `json:"environment,omitempty"`
	}{s.State, s.LogURL, s.EnvironmentURL, forge.Truncate(s.Description, 140), s.Environment}, headers)
}

// DeploymentID reads the id of the deployment GitHub made from its answer
// to CreateDeployment.
func DeploymentID(body []byte) (int64, error) {
	var d struct {
		ID      int64  `json:"id"`
		Message string `json:"message"`
	}
	if err := wire.Decode("github deployment", body, &d); err != nil {
		return 0, err
	}
	if d.ID <= 0 {
		if d.Message != "" {
			return 0, fmt.Errorf("github made no deployment: %s", d.Message)
		}
		return 0, fmt.Errorf("github deployment: the answer has no id")
	}
	return d.ID, nil
}
