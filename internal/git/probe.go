package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// DefaultBranch asks the repository at url, without fetching anything,
// which branch its HEAD names: what a forge calls the default branch. It
// says whether the URL and its credentials work before the first build
// needs them. A repository with no commits yet has no default branch: ""
// and no error. The error says what git said, with credentials removed.
func DefaultBranch(ctx context.Context, url string) (string, error) {
	m := &Mirror{url: url, env: gitEnv()}
	// No repository around it: the config of one that the server happens
	// to run inside (its remotes, url.insteadOf, credential helpers) must
	// not change what the URL means, as it does not for the mirror's
	// fetches.
	out, err := m.run(ctx, "", "--git-dir="+os.DevNull, "ls-remote", "--symref", "--", url, "HEAD")
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("reach %s: no answer in time", redactURL(url))
	case err != nil:
		return "", fmt.Errorf("reach %s: %w", redactURL(url), err)
	}
	for line := range strings.Lines(string(out)) {
		// ref: refs/heads/main<TAB>HEAD
		target, name, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if ok && name == "HEAD" && strings.HasPrefix(target, "ref: refs/heads/") {
			return strings.TrimPrefix(target, "ref: refs/heads/"), nil
		}
	}
	return "", nil
}
