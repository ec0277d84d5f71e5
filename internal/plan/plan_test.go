package plan_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from what plan.New gives")

// goldenTrigger is the trigger of every golden plan.
var goldenTrigger = plan.Trigger{
	Event:       plan.EventPush,
	Branch:      "main",
	Commit:      "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
	Repo:        "gantry",
	BuildNumber: 7,
}

// TestNewGolden turns each testdata/*.yml into its plan and compares the
// plan, as indented JSON, with testdata/*.golden.json. Run
// `go test ./internal/plan -update` to rewrite the golden files, and read
// the diff before committing it.
func TestNewGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.yml")
	}
	for _, file := range files {
		golden := strings.TrimSuffix(file, ".yml") + ".golden.json"
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := spec.Parse(filepath.Base(file), data)
			if err != nil {
				t.Fatalf("Parse(%s) = %v", file, err)
			}
			got, err := json.MarshalIndent(plan.New(p, goldenTrigger), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/plan -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("New(%s) mismatch with %s (-want +got; go test ./internal/plan -update rewrites it):\n%s", file, golden, diff)
			}
		})
	}
}

// TestGoldenFilesHaveInputs catches a golden file left behind by a renamed
// or deleted input.
func TestGoldenFilesHaveInputs(t *testing.T) {
	t.Parallel()
	goldens, err := filepath.Glob("testdata/*.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldens {
		in := strings.TrimSuffix(g, ".golden.json") + ".yml"
		if _, err := os.Stat(in); err != nil {
			t.Errorf("%s has no input %s: delete it", g, in)
		}
	}
}

// mustParse parses a pipeline that the test expects to be valid.
func mustParse(t *testing.T, src string) *spec.Pipeline {
	t.Helper()
	p, err := spec.Parse("p.yml", []byte(src))
	if err != nil {
		t.Fatalf("Parse(%q) = %v", src, err)
	}
	return p
}

func jobNames(p *plan.Plan) []string {
	var names []string
	for _, j := range p.Jobs {
		names = append(names, j.Name)
	}
	return names
}

func TestNewMatrix(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `jobs:
  lint: {steps: [x]}
  test:
    needs: lint
    matrix:
      go-version: ["1.22", "1.23"]
      os: [linux]
      include: [{go-version: "1.21", os: linux, race: "on"}]
    steps: [x]
  report:
    needs: [test]
    steps: [x]
`)
	pl := plan.New(p, plan.Trigger{Event: plan.EventManual})
	type job struct {
		Name       string
		Base       string
		Matrix     map[string]string
		MatrixKeys []string
		Needs      []string
	}
	var got []job
	for _, j := range pl.Jobs {
		got = append(got, job{j.Name, j.Base, j.Matrix, j.MatrixKeys, j.Needs})
	}
	want := []job{
		{Name: "lint", Base: "lint"},
		{
			Name: "test[go-version=1.22,os=linux]", Base: "test",
			Matrix:     map[string]string{"go-version": "1.22", "os": "linux"},
			MatrixKeys: []string{"go-version", "os"},
			Needs:      []string{"lint"},
		},
		{
			Name: "test[go-version=1.23,os=linux]", Base: "test",
			Matrix:     map[string]string{"go-version": "1.23", "os": "linux"},
			MatrixKeys: []string{"go-version", "os"},
			Needs:      []string{"lint"},
		},
		{
			Name: "test[go-version=1.21,os=linux,race=on]", Base: "test",
			Matrix:     map[string]string{"go-version": "1.21", "os": "linux", "race": "on"},
			MatrixKeys: []string{"go-version", "os", "race"},
			Needs:      []string{"lint"},
		},
		{
			Name: "report", Base: "report",
			Needs: []string{"test[go-version=1.22,os=linux]", "test[go-version=1.23,os=linux]", "test[go-version=1.21,os=linux,race=on]"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("New mismatch (-want +got):\n%s", diff)
	}
	if pl.Trigger.Event != plan.EventManual {
		t.Errorf("New(...).Trigger = %+v, want the trigger given", pl.Trigger)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	const jobs = "jobs: {a: {steps: [x]}}\n"
	push := func(branch string, changed ...string) plan.Trigger {
		return plan.Trigger{Event: plan.EventPush, Branch: branch, ChangedPaths: changed}
	}
	tag := func(name string) plan.Trigger { return plan.Trigger{Event: plan.EventTag, Tag: name} }
	pr := func(base string, changed ...string) plan.Trigger {
		return plan.Trigger{Event: plan.EventPullRequest, Branch: "feature", BaseBranch: base, ChangedPaths: changed}
	}
	schedule := plan.Trigger{Event: plan.EventSchedule, Branch: "main"}
	manual := plan.Trigger{Event: plan.EventManual, Branch: "anything"}

	tests := []struct {
		name       string
		on         string // the file's on section, or "" for none
		trigger    plan.Trigger
		wantOK     bool
		wantReason string
	}{
		// No on: every push, tag and pull request; no schedule.
		{"no on, push", "", push("feature/x"), true, ""},
		{"no on, tag", "", tag("v1"), true, ""},
		{"no on, pull request", "", pr("main"), true, ""},
		{"no on, schedule", "", schedule, false, "the pipeline has no schedule trigger"},
		{"no on, manual", "", manual, true, ""},
		{"empty on, push", "on: {}", push("main"), true, ""},
		{"empty on list, pull request", "on: []", pr("dev"), true, ""},

		// Events the file does not list.
		{"push only, pull request", "on: push", pr("main"), false, "the pipeline is not triggered by pull_request"},
		{"pull request only, push", "on: pull_request", push("main"), false, "the pipeline is not triggered by push"},
		{"pull request only, tag", "on: pull_request", tag("v1"), false, "the pipeline is not triggered by push"},
		{"schedule only, push", "on: {schedule: [{cron: '@daily'}]}", push("main"), false, "the pipeline is not triggered by push"},
		{"schedule only, schedule", "on: {schedule: [{cron: '@daily'}]}", schedule, true, ""},
		{"push, schedule", "on: push", schedule, false, "the pipeline has no schedule trigger"},
		{"push only, push", "on: push", push("any/branch"), true, ""},
		{"push only, tag", "on: push", tag("v1"), true, ""},
		{"unknown event", "", plan.Trigger{Event: "release"}, false, `unknown event "release"`},

		// Manual builds ignore on.
		{"manual, push only for main", "on: {push: {branches: main}}", manual, true, ""},
		{"manual, schedule only", "on: {schedule: [{cron: '@daily'}]}", manual, true, ""},

		// Branches: * stops at /, ** does not.
		{"branches, match", "on: {push: {branches: [main, release/*]}}", push("main"), true, ""},
		{"branches, glob", "on: {push: {branches: [main, release/*]}}", push("release/1.2"), true, ""},
		{"branches, * stops at /", "on: {push: {branches: [main, release/*]}}", push("release/1.2/hotfix"), false, `branch "release/1.2/hotfix" matches none of on.push.branches [main release/*]`},
		{"branches, ** crosses /", "on: {push: {branches: [\"release/**\"]}}", push("release/1.2/hotfix"), true, ""},
		{"branches, no match", "on: {push: {branches: main}}", push("dev"), false, `branch "dev" matches none of on.push.branches [main]`},
		{"branches, whole name", "on: {push: {branches: main}}", push("main2"), false, `branch "main2" matches none of on.push.branches [main]`},
		{"branches, alternatives", "on: {push: {branches: \"{main,dev}\"}}", push("dev"), true, ""},
		{"branches-ignore, match", "on: {push: {branches-ignore: [\"dependabot/**\"]}}", push("dependabot/npm/x"), false, `branch "dependabot/npm/x" matches on.push.branches-ignore [dependabot/**]`},
		{"branches-ignore, no match", "on: {push: {branches-ignore: [\"dependabot/**\"]}}", push("main"), true, ""},
		{"branches and branches-ignore", "on: {push: {branches: [\"release/**\"], branches-ignore: [release/old-*]}}", push("release/old-1"), false, `branch "release/old-1" matches on.push.branches-ignore [release/old-*]`},

		// Tags, and how they meet branches.
		{"tags, match", "on: {push: {tags: [\"v*\"]}}", tag("v1.2.3"), true, ""},
		{"tags, no match", "on: {push: {tags: [\"v*\"]}}", tag("nightly"), false, `tag "nightly" matches none of on.push.tags [v*]`},
		{"tags only, branch push", "on: {push: {tags: [\"v*\"]}}", push("main"), false, `branch "main": on.push lists tags but no branches`},
		{"branches only, tag push", "on: {push: {branches: [main]}}", tag("v1"), false, `tag "v1": on.push lists branches but no tags`},
		{"branches-ignore only, tag push", "on: {push: {branches-ignore: [main]}}", tag("v1"), true, ""},
		{"both, branch", "on: {push: {branches: [main], tags: [\"v*\"]}}", push("main"), true, ""},
		{"both, tag", "on: {push: {branches: [main], tags: [\"v*\"]}}", tag("v2"), true, ""},
		{"a push with a tag is a tag", "on: {push: {branches: [main]}}", plan.Trigger{Event: plan.EventPush, Tag: "v1"}, false, `tag "v1": on.push lists branches but no tags`},

		// Paths.
		{"paths, a file matches", "on: {push: {paths: [\"src/**\"]}}", push("main", "README.md", "src/a/b.go"), true, ""},
		{"paths, none matches", "on: {push: {paths: [\"src/**\", go.mod]}}", push("main", "docs/a.md", "README.md"), false, "no changed file matches on.push.paths [src/** go.mod]"},
		{"paths, * stops at /", "on: {push: {paths: [\"*.go\"]}}", push("main", "cmd/main.go"), false, "no changed file matches on.push.paths [*.go]"},
		{"paths, top-level file", "on: {push: {paths: [\"*.go\"]}}", push("main", "main.go"), true, ""},
		{"paths, changes unknown", "on: {push: {paths: [\"src/**\"]}}", push("main"), true, ""},
		{"paths-ignore, every file ignored", "on: {push: {paths-ignore: [\"**/*.md\"]}}", push("main", "README.md", "docs/guide/a.md"), false, "every changed file matches on.push.paths-ignore [**/*.md]"},
		{"paths-ignore, one file not", "on: {push: {paths-ignore: [\"**/*.md\"]}}", push("main", "README.md", "main.go"), true, ""},
		{"paths and paths-ignore", "on: {push: {paths: [\"src/**\"], paths-ignore: [\"src/**/*_test.go\"]}}", push("main", "src/a_test.go", "docs/x"), false, "no changed file matches on.push.paths [src/**]"},
		{"paths after branches", "on: {push: {branches: [main], paths: [\"src/**\"]}}", push("dev", "src/a.go"), false, `branch "dev" matches none of on.push.branches [main]`},
		{"paths on a tag", "on: {push: {tags: [\"v*\"], paths: [\"src/**\"]}}", plan.Trigger{Event: plan.EventTag, Tag: "v1", ChangedPaths: []string{"docs/a.md"}}, false, "no changed file matches on.push.paths [src/**]"},

		// Pull requests filter on their target branch.
		{"pull request, base matches", "on: {pull_request: {branches: [main]}}", pr("main"), true, ""},
		{"pull request, base does not match", "on: {pull_request: {branches: [main]}}", pr("develop"), false, `branch "develop" matches none of on.pull_request.branches [main]`},
		{"pull request, head branch is not the filter", "on: {pull_request: {branches: [feature]}}", pr("main"), false, `branch "main" matches none of on.pull_request.branches [feature]`},
		{"pull request, base ignored", "on: {pull_request: {branches-ignore: [\"release/**\"]}}", pr("release/1.x"), false, `branch "release/1.x" matches on.pull_request.branches-ignore [release/**]`},
		{"pull request, paths", "on: {pull_request: {paths: [\"src/**\"]}}", pr("main", "docs/a.md"), false, "no changed file matches on.pull_request.paths [src/**]"},
		{"pull request, paths-ignore", "on: {pull_request: {paths-ignore: [\"docs/**\"]}}", pr("main", "docs/a.md"), false, "every changed file matches on.pull_request.paths-ignore [docs/**]"},
		{"pull request, empty", "on: {pull_request: }", pr("anything"), true, ""},
	}
	for _, tt := range tests {
		p := mustParse(t, tt.on+"\n"+jobs)
		ok, reason := plan.Match(p.On, tt.trigger)
		if ok != tt.wantOK || reason != tt.wantReason {
			t.Errorf("%s: Match(%s, %+v) = %v, %q; want %v, %q", tt.name, tt.on, tt.trigger, ok, reason, tt.wantOK, tt.wantReason)
		}
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `jobs:
  lint: {steps: [x]}
  unit: {steps: [x]}
  build:
    needs: unit
    matrix: {os: [linux, darwin]}
    steps: [x]
  e2e:
    needs: [build, lint]
    steps: [x]
  docs: {steps: [x]}
  deploy:
    needs: e2e
    steps: [x]
`)
	full := plan.New(p, plan.Trigger{Event: plan.EventManual})
	tests := []struct {
		names []string
		want  []string
	}{
		{[]string{"lint"}, []string{"lint"}},
		{[]string{"docs", "lint"}, []string{"lint", "docs"}}, // plan order, not argument order
		{[]string{"build"}, []string{"unit", "build[os=linux]", "build[os=darwin]"}},
		{[]string{"build[os=darwin]"}, []string{"unit", "build[os=darwin]"}},
		{[]string{"e2e"}, []string{"lint", "unit", "build[os=linux]", "build[os=darwin]", "e2e"}},
		{[]string{"deploy"}, []string{"lint", "unit", "build[os=linux]", "build[os=darwin]", "e2e", "deploy"}},
		{[]string{"deploy", "e2e", "unit"}, []string{"lint", "unit", "build[os=linux]", "build[os=darwin]", "e2e", "deploy"}},
		{nil, nil},
	}
	for _, tt := range tests {
		got, err := full.Select(tt.names...)
		if err != nil {
			t.Errorf("Select(%q) = %v, want no error", tt.names, err)
			continue
		}
		if diff := cmp.Diff(tt.want, jobNames(got)); diff != "" {
			t.Errorf("Select(%q) mismatch (-want +got):\n%s", tt.names, diff)
		}
		if !cmp.Equal(got.Trigger, full.Trigger) || !cmp.Equal(got.Env, full.Env) {
			t.Errorf("Select(%q) = trigger %+v env %v, want the plan's", tt.names, got.Trigger, got.Env)
		}
	}
	if len(full.Jobs) != 7 {
		t.Errorf("Select changed the plan it was called on: %q", jobNames(full))
	}

	errTests := []struct {
		names []string
		want  string
	}{
		{[]string{"tests"}, `no job "tests" in this pipeline (jobs: lint, unit, build, e2e, docs, deploy)`},
		{[]string{"lint", "build[os=windows]"}, `no job "build[os=windows]" in this pipeline (jobs: lint, unit, build, e2e, docs, deploy)`},
		{[]string{""}, `no job "" in this pipeline (jobs: lint, unit, build, e2e, docs, deploy)`},
	}
	for _, tt := range errTests {
		got, err := full.Select(tt.names...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Select(%q) = %v, %v; want error %q", tt.names, got, err, tt.want)
		}
	}
}

// TestGoldenIsValidJSON keeps the golden files readable by other tools: each
// is one JSON document.
func TestGoldenIsValidJSON(t *testing.T) {
	t.Parallel()
	goldens, _ := filepath.Glob("testdata/*.golden.json")
	for _, g := range goldens {
		data, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(bytes.TrimSpace(data)) {
			t.Errorf("%s is not valid JSON", g)
		}
	}
}
