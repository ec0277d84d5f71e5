package delivery

import (
	"slices"

	"github.com/gantry-ci/gantry/internal/issue"
	"github.com/gantry-ci/gantry/internal/store"
)

// maxReleaseIssues bounds the issue keys recorded on one release.
const maxReleaseIssues = 1000

// releaseIssues are the issue keys a release ships: those the messages
// of its commits name, and those its build's branch and pull request
// title name, sorted, at most maxReleaseIssues.
func releaseIssues(b *store.Build, messages []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, text := range append([]string{b.Branch, b.Title}, messages...) {
		for _, k := range issue.Keys(text) {
			if !seen[k] && len(out) < maxReleaseIssues {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}
