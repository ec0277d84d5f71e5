package notify

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Events are the names of everything a hook may subscribe to, in the
// order they happen. Each is sent at most once per build (or deployment)
// and hook, whichever server sees it. The deployment events come from the
// delivery service (DeploymentChanged).
var Events = []string{
	// A build was created (queued, or already finished when its pipeline
	// excluded the push, could not be read, or came from a fork).
	"build.created",
	// A job of the build started running.
	"build.started",
	// The build reached a final status: success, failure, error,
	// cancelled or skipped.
	"build.finished",
	// The build finished as failure or error.
	"build.failed",
	// The build succeeded, and the previous finished build of its branch
	// had failed.
	"build.fixed",
	// A deployment of a release to an environment was asked for.
	"deployment.created",
	// A deployment waits for an approval (sent once, when it is asked
	// for; approvals given are in the events that follow).
	"deployment.approval_required",
	// A deployment started rolling out.
	"deployment.started",
	// A deployment finished: succeeded (a rollback too: its kind says
	// so), failed (a rejection too), or was cancelled.
	"deployment.finished",
}

// ParseEvents checks a hook's list of event names and globs (build.*,
// deployment.*, *): each must be a well-formed glob that matches at least
// one known event. It returns the list without duplicates, in the order
// given, or an error that names the first bad entry and the known events.
func ParseEvents(list []string) ([]string, error) {
	var out []string
	for _, e := range list {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if _, err := path.Match(e, ""); err != nil {
			return nil, fmt.Errorf("event %q is not a valid glob: %v", e, err)
		}
		known := false
		for _, name := range Events {
			known = known || matchEvent(e, name)
		}
		if !known {
			return nil, fmt.Errorf("unknown event %q: want one of %s, or a glob such as build.* or deployment.*", e, strings.Join(Events, ", "))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no events: name at least one of %s, or a glob such as build.*", strings.Join(Events, ", "))
	}
	return out, nil
}

// matchEvent reports whether the glob pattern matches the event name.
func matchEvent(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}

// Subscribed reports whether a hook with these patterns gets event.
func Subscribed(patterns []string, event string) bool {
	for _, p := range patterns {
		if matchEvent(p, event) {
			return true
		}
	}
	return false
}
