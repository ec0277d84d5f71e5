package api

import (
	"context"
	"net/url"
	"strings"
)

// secretsPath is the secret route of repo, each part of its name escaped.
func secretsPath(repo string) string {
	parts := strings.Split(repo, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/api/v1/secrets/" + strings.Join(parts, "/")
}

// Secrets lists a repository's secrets, without their values.
func (c *Client) Secrets(ctx context.Context, repo string) ([]Secret, error) {
	var out []Secret
	return out, c.do(ctx, "GET", secretsPath(repo), nil, &out)
}

// SetSecret sets a secret of a repository; the answer says whether it
// was created (201) or replaced (200), and never holds the value.
func (c *Client) SetSecret(ctx context.Context, repo string, s SetSecret) (*Secret, bool, error) {
	var out Secret
	status, err := c.Do(ctx, "PUT", secretsPath(repo), s, &out)
	return &out, status == 201, err
}

// DeleteSecret removes a secret of a repository; env "" is the unscoped one.
func (c *Client) DeleteSecret(ctx context.Context, repo, name, env string) error {
	q := url.Values{"name": {name}}
	if env != "" {
		q.Set("environment", env)
	}
	return c.do(ctx, "DELETE", secretsPath(repo)+"?"+q.Encode(), nil, nil)
}

// RotateSecretKey re-encrypts every secret under a new key (admin).
func (c *Client) RotateSecretKey(ctx context.Context) (*KeyRotation, error) {
	var out KeyRotation
	return &out, c.do(ctx, "POST", "/api/v1/secret-keys/rotate", nil, &out)
}
