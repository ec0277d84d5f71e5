package git

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Authors returns the authors ("Name <email>") of the commits reachable
// from to and not from from, first seen first, looking at no more than max
// commits; with from empty, or not in the mirror, the author of to alone.
// to must be in the mirror.
func (m *Mirror) Authors(ctx context.Context, from, to string, max int) ([]string, error) {
	t, err := checkCommit(to)
	if err != nil {
		return nil, fmt.Errorf("authors of %q: %w", to, err)
	}
	if err := m.init(ctx); err != nil {
		return nil, fmt.Errorf("authors of %s: %w", t, err)
	}
	args := []string{"--git-dir=" + m.dir, "log", "--format=%aN <%aE>", "--max-count=" + strconv.Itoa(max)}
	if f, err := checkCommit(from); err == nil && from != "" && m.has(ctx, f) {
		args = append(args, f+".."+t)
	} else {
		args = append(args, "-1", t)
	}
	out, err := m.run(ctx, "", args...)
	if err != nil {
		return nil, fmt.Errorf("authors of %s: %w", t, err)
	}
	seen := map[string]bool{}
	authors := []string{}
	for l := range strings.Lines(string(out)) {
		l = strings.TrimSpace(l)
		if l != "" && !seen[l] {
			seen[l] = true
			authors = append(authors, l)
		}
	}
	return authors, nil
}
