package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCollect(t *testing.T) {
	t.Parallel()
	ws := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("host file"), 0o600)
	for _, f := range []string{"dist/app", "dist/lib/a.so", "dist/lib/deep/b.so", "docs/x.md", "README"} {
		p := filepath.Join(ws, filepath.FromSlash(f))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink(outside, filepath.Join(ws, "dist", "leak"))
	os.Symlink("/", filepath.Join(ws, "dist", "lib", "root"))
	os.MkdirAll(filepath.Join(ws, "links"), 0o755)
	os.Symlink(outside, filepath.Join(ws, "links", "only"))

	for _, c := range []struct {
		name           string
		patterns       []string
		files, skipped []string
		err            string
	}{
		{name: "a directory stands for its files; links are skipped", patterns: []string{"dist/*"},
			files:   []string{"dist/app", "dist/lib/a.so", "dist/lib/deep/b.so"},
			skipped: []string{"dist/leak", "dist/lib/root"}},
		{name: "** and overlapping patterns, each file once", patterns: []string{"**/*.so", "dist/lib", "README"},
			files:   []string{"README", "dist/lib/a.so", "dist/lib/deep/b.so"},
			skipped: []string{"dist/lib/root"}},
		{name: "a pattern that matches nothing", patterns: []string{"dist/app", "build/*"}, err: `artifacts: "build/*" matches no file in the workspace`},
		{name: "a pattern that matches only links", patterns: []string{"links/*"}, err: `artifacts: "links/*" matches no file`},
	} {
		files, skipped, err := collect(ws, c.patterns)
		if c.err != "" {
			var ea *errArtifacts
			if !errors.As(err, &ea) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: collect() = %v, want the job's error %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: collect() = %v", c.name, err)
			continue
		}
		if diff := cmp.Diff(c.files, files); diff != "" {
			t.Errorf("%s: files (-want +got):\n%s", c.name, diff)
		}
		if diff := cmp.Diff(c.skipped, skipped); diff != "" {
			t.Errorf("%s: skipped (-want +got):\n%s", c.name, diff)
		}
	}
}
