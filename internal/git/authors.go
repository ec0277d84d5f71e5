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
	out, err := m.logRange(ctx, "authors", from, to, max, "%aN <%aE>%x00")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	authors := []string{}
	for _, l := range out {
		if l != "" && !seen[l] {
			seen[l] = true
			authors = append(authors, l)
		}
	}
	return authors, nil
}

// Messages returns the messages (subject and body) of the same commits as
// Authors, newest first.
func (m *Mirror) Messages(ctx context.Context, from, to string, max int) ([]string, error) {
	return m.logRange(ctx, "messages", from, to, max, "%B%x00")
}

// logRange runs git log over the commits Authors reads with format, whose
// entries end in a NUL, and returns each entry, trimmed.
func (m *Mirror) logRange(ctx context.Context, what, from, to string, max int, format string) ([]string, error) {
	t, err := checkCommit(to)
	if err != nil {
		return nil, fmt.Errorf("%s of %q: %w", what, to, err)
	}
	if err := m.init(ctx); err != nil {
		return nil, fmt.Errorf("%s of %s: %w", what, t, err)
	}
	args := []string{"--git-dir=" + m.dir, "log", "--format=" + format, "--max-count=" + strconv.Itoa(max)}
	if f, err := checkCommit(from); err == nil && from != "" && m.has(ctx, f) {
		args = append(args, f+".."+t)
	} else {
		args = append(args, "-1", t)
	}
	out, err := m.run(ctx, "", args...)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", what, t, err)
	}
	entries := strings.Split(string(out), "\x00")
	var list []string
	for _, e := range entries {
		if e = strings.TrimSpace(e); e != "" {
			list = append(list, e)
		}
	}
	return list, nil
}
