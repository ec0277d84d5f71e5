package api

import (
	"context"
	"fmt"
	"net/url"
)

// Whoami says who the client's token acts for and what they may do.
func (c *Client) Whoami(ctx context.Context) (*Whoami, error) {
	var out Whoami
	return &out, c.do(ctx, "GET", "/api/v1/whoami", nil, &out)
}

// AddUser creates a user; the answer holds their first token.
func (c *Client) AddUser(ctx context.Context, u NewUser) (*User, error) {
	var out User
	return &out, c.do(ctx, "POST", "/api/v1/users", u, &out)
}

// Users lists users.
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var out []User
	return out, c.do(ctx, "GET", "/api/v1/users", nil, &out)
}

// DeleteUser removes a user with their tokens.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/api/v1/users/"+url.PathEscape(name), nil, nil)
}

// CreateToken creates an API token; the answer holds its secret.
func (c *Client) CreateToken(ctx context.Context, t NewToken) (*APIToken, error) {
	var out APIToken
	return &out, c.do(ctx, "POST", "/api/v1/tokens", t, &out)
}

// Tokens lists the API tokens of the caller, or for an admin of user.
func (c *Client) Tokens(ctx context.Context, user string) ([]APIToken, error) {
	var out []APIToken
	path := "/api/v1/tokens"
	if user != "" {
		path += "?user=" + url.QueryEscape(user)
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// RevokeToken revokes an API token.
func (c *Client) RevokeToken(ctx context.Context, id int64) (*APIToken, error) {
	var out APIToken
	return &out, c.do(ctx, "POST", fmt.Sprintf("/api/v1/tokens/%d/revoke", id), nil, &out)
}

// Groups lists groups with their members.
func (c *Client) Groups(ctx context.Context) ([]Group, error) {
	var out []Group
	return out, c.do(ctx, "GET", "/api/v1/groups", nil, &out)
}

// AddToGroup adds users to a group, creating it.
func (c *Client) AddToGroup(ctx context.Context, group string, users []string) (*Group, error) {
	var out Group
	return &out, c.do(ctx, "POST", "/api/v1/groups/"+url.PathEscape(group)+"/add", GroupMembers{Users: users}, &out)
}

// RemoveFromGroup removes users from a group.
func (c *Client) RemoveFromGroup(ctx context.Context, group string, users []string) (*Group, error) {
	var out Group
	return &out, c.do(ctx, "POST", "/api/v1/groups/"+url.PathEscape(group)+"/remove", GroupMembers{Users: users}, &out)
}

// DeleteGroup removes a group with its grants.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/api/v1/groups/"+url.PathEscape(name), nil, nil)
}

// Grants lists the roles on a repo, or on every repo the caller maintains.
func (c *Client) Grants(ctx context.Context, repo string) ([]Grant, error) {
	var out []Grant
	path := "/api/v1/grants"
	if repo != "" {
		path += "?repo=" + url.QueryEscape(repo)
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// Grant gives a user or group a role on a repo ("*": every repo).
func (c *Client) Grant(ctx context.Context, g Grant) (*Grant, error) {
	var out Grant
	return &out, c.do(ctx, "POST", "/api/v1/grants", g, &out)
}

// RevokeGrant takes a user's or group's role on a repo away.
func (c *Client) RevokeGrant(ctx context.Context, g Grant) error {
	return c.do(ctx, "POST", "/api/v1/grants/revoke", g, nil)
}
