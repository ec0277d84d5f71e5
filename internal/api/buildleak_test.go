package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A route that names a build by its ID does not tell a caller who may not
// see the build's repo the repo's name; one who may see it is told.
func TestBuildRouteHidesAnUnseenRepo(t *testing.T) {
	origin, _ := gitOrigin(t)
	e := newAccessEnv(t, origin)
	for _, path := range []string{"/api/v1/builds/%d", "/api/v1/builds/%d/logs", "/api/v1/builds/%d/artifacts"} {
		p := fmt.Sprintf(path, e.queued)
		code, body := e.call(t, "outsider", "GET", p, nil)
		if code != http.StatusForbidden || strings.Contains(body, "acme/web") {
			t.Errorf("GET %s as outsider = %d %s, want 403 without the repo's name", p, code, strings.TrimSpace(body))
		}
	}
	p := fmt.Sprintf("/api/v1/builds/%d/cancel", e.queued)
	code, body := e.call(t, "viewer", "POST", p, nil)
	if code != http.StatusForbidden || !strings.Contains(body, "needs role developer on acme/web") {
		t.Errorf("POST %s as viewer = %d %s, want 403 naming the repo", p, code, strings.TrimSpace(body))
	}
}
