package git

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuthors(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	first := o.commit(map[string]string{"a": "1"})
	by := func(who string) string {
		o.git("commit", "--quiet", "--allow-empty", "--author="+who, "-m", "change")
		return o.git("rev-parse", "HEAD")
	}
	by("Ann <ann@example.com>")
	by("Bob <bob@example.com>")
	last := by("Ann <ann@example.com>")
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, last); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		from, to string
		max      int
		want     []string
	}{
		{"since the last release, newest first, each once", first, last, 100, []string{"Ann <ann@example.com>", "Bob <bob@example.com>"}},
		{"no release before", "", last, 100, []string{"Ann <ann@example.com>"}},
		{"a release before that the mirror lacks", "0123456789abcdef0123456789abcdef01234567", last, 100, []string{"Ann <ann@example.com>"}},
		{"at most max commits", first, last, 1, []string{"Ann <ann@example.com>"}},
		{"the first commit", "", first, 100, []string{"Test <test@example.com>"}},
	} {
		got, err := m.Authors(ctx, c.from, c.to, c.max)
		if err != nil {
			t.Fatalf("%s: Authors() = %v", c.name, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: Authors() (-want +got):\n%s", c.name, diff)
		}
	}
	if _, err := m.Authors(ctx, "", "not-a-commit", 10); err == nil {
		t.Error("Authors(not a commit) = nil error")
	}
}

func TestMessages(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	first := o.commit(map[string]string{"a": "1"})
	say := func(msg string) string {
		o.git("commit", "--quiet", "--allow-empty", "-m", msg)
		return o.git("rev-parse", "HEAD")
	}
	say("OPS-7: fix the frobnicator\n\nSee also #12.")
	last := say("Bump the version")
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, last); err != nil {
		t.Fatal(err)
	}
	got, err := m.Messages(ctx, first, last, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Bump the version", "OPS-7: fix the frobnicator\n\nSee also #12."}, got); diff != "" {
		t.Errorf("Messages(since the first) (-want +got):\n%s", diff)
	}
	if got, err := m.Messages(ctx, "", last, 100); err != nil || len(got) != 1 {
		t.Errorf("Messages(no release before) = %q, %v; want the last commit's alone", got, err)
	}
	if _, err := m.Messages(ctx, "", "not-a-commit", 10); err == nil {
		t.Error("Messages(not a commit) = nil error")
	}
}
