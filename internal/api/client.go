package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls a Gantry server's API.
type Client struct {
	// Server is the server's base URL, such as http://127.0.0.1:8080.
	Server string
	Token  string
	HTTP   *http.Client
	// Agent marks the client as an agent: it sends the agent protocol
	// version with every request.
	Agent bool
	// Reason, when set, is sent with every request as the Gantry-Reason
	// header: the audit log records it with each act.
	Reason string
}

// StatusError is an error answer from the server.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.Status, e.Message)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 60 * time.Second}
}

func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Server, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if c.Agent {
		req.Header.Set(protocolHeader, AgentProtocol)
	}
	if c.Reason != "" {
		req.Header.Set(ReasonHeader, c.Reason)
	}
	return req, nil
}

// Do makes one call: body is sent as JSON and the answer decoded into out
// unless it is 204 No Content. It returns the status, and a *StatusError
// for answers of 300 and above.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (int, error) {
	req, err := c.request(ctx, method, path, body)
	if err != nil {
		return 0, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return resp.StatusCode, err
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.Do(ctx, method, path, body, out)
	return err
}

func checkStatus(resp *http.Response) error {
	if resp.StatusCode < 300 {
		return nil
	}
	var e Error
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
	}
	return &StatusError{Status: resp.StatusCode, Message: e.Error}
}

// AddRepo registers a repository.
func (c *Client) AddRepo(ctx context.Context, r NewRepo) (*RepoAnswer, error) {
	var out RepoAnswer
	return &out, c.do(ctx, "POST", "/api/v1/repos", r, &out)
}

// Repos lists repositories.
func (c *Client) Repos(ctx context.Context) ([]Repo, error) {
	var out []Repo
	return out, c.do(ctx, "GET", "/api/v1/repos", nil, &out)
}

// UpdateRepo changes a repository's settings; see RepoChange.
func (c *Client) UpdateRepo(ctx context.Context, name string, ch RepoChange) (*RepoAnswer, error) {
	var out RepoAnswer
	return &out, c.do(ctx, "PATCH", "/api/v1/repos/"+name, ch, &out)
}

// DeleteRepo removes a repository and its builds.
func (c *Client) DeleteRepo(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/api/v1/repos/"+name, nil, nil)
}

// Trigger starts a manual build.
func (c *Client) Trigger(ctx context.Context, repo string, t Trigger) (*Build, error) {
	var out Build
	t.Repo = repo
	return &out, c.do(ctx, "POST", "/api/v1/builds", t, &out)
}

// Builds lists builds, newest first.
func (c *Client) Builds(ctx context.Context, repo, branch, status string, limit int) ([]Build, error) {
	q := url.Values{}
	for k, v := range map[string]string{"repo": repo, "branch": branch, "status": status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out []Build
	return out, c.do(ctx, "GET", "/api/v1/builds?"+q.Encode(), nil, &out)
}

// Build returns one build with its jobs and steps.
func (c *Client) Build(ctx context.Context, id int64) (*Build, error) {
	var out Build
	return &out, c.do(ctx, "GET", fmt.Sprintf("/api/v1/builds/%d", id), nil, &out)
}

// Cancel cancels a build.
func (c *Client) Cancel(ctx context.Context, id int64) (*Build, error) {
	var out Build
	return &out, c.do(ctx, "POST", fmt.Sprintf("/api/v1/builds/%d/cancel", id), nil, &out)
}

// Retry starts a new build of the same commit; failedOnly reuses the jobs
// that passed.
func (c *Client) Retry(ctx context.Context, id int64, failedOnly bool) (*Build, error) {
	var out Build
	path := fmt.Sprintf("/api/v1/builds/%d/retry", id)
	if failedOnly {
		path += "?failed=1"
	}
	return &out, c.do(ctx, "POST", path, nil, &out)
}

// Logs returns a build's log lines so far, of one job or all.
func (c *Client) Logs(ctx context.Context, id int64, job string) ([]LogLine, error) {
	var out []LogLine
	return out, c.do(ctx, "GET", fmt.Sprintf("/api/v1/builds/%d/logs?job=%s", id, url.QueryEscape(job)), nil, &out)
}

// FollowLogs streams a build's log lines to fn until the build finishes,
// and returns the finished build.
func (c *Client) FollowLogs(ctx context.Context, id int64, job string, fn func(LogLine)) (*Build, error) {
	req, err := c.request(ctx, "GET", fmt.Sprintf("/api/v1/builds/%d/logs?follow=1&job=%s", id, url.QueryEscape(job)), nil)
	if err != nil {
		return nil, err
	}
	hc := *c.httpClient()
	hc.Timeout = 0 // a stream lasts as long as the build
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("follow logs of build %d: %w", id, err)
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := []byte(strings.TrimPrefix(line, "data: "))
			switch event {
			case "log":
				var l LogLine
				if err := json.Unmarshal(data, &l); err == nil {
					fn(l)
				}
			case "end":
				var b Build
				if err := json.Unmarshal(data, &b); err != nil {
					return nil, err
				}
				return &b, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("log stream ended before the build finished")
}

// CreateAgentToken creates an agent token; the answer holds its secret.
func (c *Client) CreateAgentToken(ctx context.Context, t NewAgentToken) (*AgentToken, error) {
	var out AgentToken
	return &out, c.do(ctx, "POST", "/api/v1/agent-tokens", t, &out)
}

// AgentTokens lists agent tokens, revoked ones included.
func (c *Client) AgentTokens(ctx context.Context) ([]AgentToken, error) {
	var out []AgentToken
	return out, c.do(ctx, "GET", "/api/v1/agent-tokens", nil, &out)
}

// RevokeAgentToken revokes an agent token; its agents' jobs go elsewhere.
func (c *Client) RevokeAgentToken(ctx context.Context, id int64) (*AgentToken, error) {
	var out AgentToken
	return &out, c.do(ctx, "POST", fmt.Sprintf("/api/v1/agent-tokens/%d/revoke", id), nil, &out)
}

// Agents lists the agents the server knows.
func (c *Client) Agents(ctx context.Context) ([]Agent, error) {
	var out []Agent
	return out, c.do(ctx, "GET", "/api/v1/agents", nil, &out)
}

// Queue lists the jobs that wait, with why.
func (c *Client) Queue(ctx context.Context) ([]QueuedJob, error) {
	var out []QueuedJob
	return out, c.do(ctx, "GET", "/api/v1/queue", nil, &out)
}

// AddLock creates a resource pool.
func (c *Client) AddLock(ctx context.Context, l NewLock) (*Lock, error) {
	var out Lock
	return &out, c.do(ctx, "POST", "/api/v1/locks", l, &out)
}

// Locks lists resource pools with the jobs that hold them.
func (c *Client) Locks(ctx context.Context) ([]Lock, error) {
	var out []Lock
	return out, c.do(ctx, "GET", "/api/v1/locks", nil, &out)
}

// DeleteLock removes a resource pool.
func (c *Client) DeleteLock(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/api/v1/locks/"+url.PathEscape(name), nil, nil)
}
