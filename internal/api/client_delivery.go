package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Artifacts lists the artifacts of a build.
func (c *Client) Artifacts(ctx context.Context, buildID int64) ([]Artifact, error) {
	var out []Artifact
	return out, c.do(ctx, "GET", fmt.Sprintf("/api/v1/builds/%d/artifacts", buildID), nil, &out)
}

// ArtifactBody is an artifact's bytes as the server sends them, with what
// its record says they are. The reader checks them.
type ArtifactBody struct {
	io.ReadCloser
	SHA256 string
	Size   int64
	Mode   uint32
}

// escapePath escapes each part of a slash-separated path for a URL.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// stream makes a GET whose answer is a body to read as long as it takes.
func (c *Client) stream(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	req, err := c.request(ctx, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	hc := *c.httpClient()
	hc.Timeout = 0 // a large file takes as long as it takes; ctx bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// Artifact opens the bytes of a build's artifact at path.
func (c *Client) Artifact(ctx context.Context, buildID int64, path string) (*ArtifactBody, error) {
	resp, err := c.stream(ctx, fmt.Sprintf("/api/v1/builds/%d/artifacts/%s", buildID, escapePath(path)), nil)
	if err != nil {
		return nil, err
	}
	mode, _ := strconv.ParseUint(resp.Header.Get(headerMode), 8, 32)
	return &ArtifactBody{ReadCloser: resp.Body, SHA256: resp.Header.Get(headerSHA256), Size: resp.ContentLength, Mode: uint32(mode)}, nil
}

// LeaseRef names a lease in an agent's artifact calls.
type LeaseRef struct {
	BuildID, JobID, Token int64
	Key                   string
}

func (l LeaseRef) header() http.Header {
	h := http.Header{}
	h.Set(headerBuild, strconv.FormatInt(l.BuildID, 10))
	h.Set(headerToken, strconv.FormatInt(l.Token, 10))
	h.Set(headerKey, l.Key)
	return h
}

// PutArtifact uploads a file of a leased job as an artifact: size bytes
// from body, which must hash to digest. It returns the status, and a
// *StatusError for answers of 300 and above.
func (c *Client) PutArtifact(ctx context.Context, l LeaseRef, path string, mode uint32, digest string, size int64, body io.Reader) (int, error) {
	p := fmt.Sprintf("/api/v1/agent/jobs/%d/artifacts?path=%s", l.JobID, url.QueryEscape(path))
	req, err := c.request(ctx, "PUT", p, nil)
	if err != nil {
		return 0, err
	}
	req.Body = io.NopCloser(body)
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	for k, v := range l.header() {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(headerSHA256, digest)
	req.Header.Set(headerMode, fmt.Sprintf("%04o", mode))
	hc := *c.httpClient()
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("PUT artifact %s: %w", path, err)
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return resp.StatusCode, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// AgentArtifact opens artifact id of the release a leased deployment job
// deploys.
func (c *Client) AgentArtifact(ctx context.Context, l LeaseRef, id int64) (io.ReadCloser, error) {
	resp, err := c.stream(ctx, fmt.Sprintf("/api/v1/agent/jobs/%d/artifacts/%d", l.JobID, id), l.header())
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Releases lists a repo's releases, newest first.
func (c *Client) Releases(ctx context.Context, repo, branch string, limit int) ([]Release, error) {
	q := url.Values{"repo": {repo}}
	if branch != "" {
		q.Set("branch", branch)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []Release
	return out, c.do(ctx, "GET", "/api/v1/releases?"+q.Encode(), nil, &out)
}

// Release returns a repo's release of a version, with its deployments.
func (c *Client) Release(ctx context.Context, repo, version string) (*Release, error) {
	var out Release
	return &out, c.do(ctx, "GET", "/api/v1/releases/"+escapePath(version)+"?repo="+url.QueryEscape(repo), nil, &out)
}

// Environments returns a repo's environments: what runs where, since when,
// by whom, and what waits.
func (c *Client) Environments(ctx context.Context, repo string) ([]Environment, error) {
	var out []Environment
	return out, c.do(ctx, "GET", "/api/v1/environments?repo="+url.QueryEscape(repo), nil, &out)
}

// Deployments lists a repo's deployments, newest first, of one
// environment or all.
func (c *Client) Deployments(ctx context.Context, repo, env string, limit int) ([]Deployment, error) {
	q := url.Values{"repo": {repo}}
	if env != "" {
		q.Set("environment", env)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []Deployment
	return out, c.do(ctx, "GET", "/api/v1/deployments?"+q.Encode(), nil, &out)
}

// Deploy asks for a release to go to an environment.
func (c *Client) Deploy(ctx context.Context, r DeployRequest) (*Deployment, error) {
	var out Deployment
	return &out, c.do(ctx, "POST", "/api/v1/deployments", r, &out)
}

// Promote asks for a release to go on from one environment to the next.
func (c *Client) Promote(ctx context.Context, r PromoteRequest) (*Deployment, error) {
	var out Deployment
	return &out, c.do(ctx, "POST", "/api/v1/promotions", r, &out)
}

// Rollback asks for an environment to go back to the release before.
func (c *Client) Rollback(ctx context.Context, r RollbackRequest) (*Deployment, error) {
	var out Deployment
	return &out, c.do(ctx, "POST", "/api/v1/rollbacks", r, &out)
}

// Approve approves a deployment waiting for approval.
func (c *Client) Approve(ctx context.Context, id int64, comment string) (*Deployment, error) {
	var out Deployment
	return &out, c.do(ctx, "POST", fmt.Sprintf("/api/v1/deployments/%d/approve", id), Decision{Comment: comment}, &out)
}

// Reject rejects a deployment waiting for approval, which ends it.
func (c *Client) Reject(ctx context.Context, id int64, comment string) (*Deployment, error) {
	var out Deployment
	return &out, c.do(ctx, "POST", fmt.Sprintf("/api/v1/deployments/%d/reject", id), Decision{Comment: comment}, &out)
}

// Freezes lists the freezes admins set on a repo that have not ended.
func (c *Client) Freezes(ctx context.Context, repo string) ([]Freeze, error) {
	var out []Freeze
	return out, c.do(ctx, "GET", "/api/v1/freezes?repo="+url.QueryEscape(repo), nil, &out)
}

// AddFreeze sets a freeze window on an environment.
func (c *Client) AddFreeze(ctx context.Context, f FreezeRequest) (*Freeze, error) {
	var out Freeze
	return &out, c.do(ctx, "POST", "/api/v1/freezes", f, &out)
}

// DeleteFreeze removes a freeze and returns it.
func (c *Client) DeleteFreeze(ctx context.Context, id int64) (*Freeze, error) {
	var out Freeze
	return &out, c.do(ctx, "DELETE", "/api/v1/freezes/"+strconv.FormatInt(id, 10), nil, &out)
}
