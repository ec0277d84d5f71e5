package spec_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gantry-ci/gantry/internal/spec"
)

// ignorePos leaves positions out of a comparison of pipelines;
// TestParsePositions checks them on their own.
var ignorePos = cmp.Options{
	cmpopts.IgnoreFields(spec.Job{}, "Pos", "NeedsPos", "IfPos"),
	cmpopts.IgnoreFields(spec.Step{}, "Pos", "RunPos", "IfPos"),
	cmpopts.IgnoreFields(spec.Schedule{}, "Pos"),
	cmpopts.IgnoreFields(spec.Environment{}, "Pos"),
	cmpopts.IgnoreFields(spec.Freeze{}, "Pos"),
	cmpopts.EquateEmpty(),
}

// step is a step that is only a command, as the shorthand `- cmd` gives.
func step(run string) *spec.Step { return &spec.Step{Run: run} }

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want *spec.Pipeline
	}{
		{
			name: "minimal",
			src: `jobs:
  test:
    steps:
      - make test
`,
			want: &spec.Pipeline{Jobs: []*spec.Job{{Name: "test", Steps: []*spec.Step{step("make test")}}}},
		},
		{
			name: "jobs and environments keep file order",
			src: `jobs:
  zeta: {steps: [z]}
  alpha: {steps: [a]}
  mid: {steps: [m]}
environments:
  prod: {steps: [p]}
  dev: {steps: [d]}
`,
			want: &spec.Pipeline{
				Jobs: []*spec.Job{
					{Name: "zeta", Steps: []*spec.Step{step("z")}},
					{Name: "alpha", Steps: []*spec.Step{step("a")}},
					{Name: "mid", Steps: []*spec.Step{step("m")}},
				},
				Environments: []*spec.Environment{
					{Name: "prod", Steps: []*spec.Step{step("p")}},
					{Name: "dev", Steps: []*spec.Step{step("d")}},
				},
			},
		},
		{
			name: "on as one event",
			src: `on: push
jobs: {a: {steps: [x]}}
`,
			want: &spec.Pipeline{
				On:   spec.Triggers{Push: &spec.PushTrigger{}},
				Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{step("x")}}},
			},
		},
		{
			name: "on as a list of events",
			src: `on: [push, pull_request]
jobs: {a: {steps: [x]}}
`,
			want: &spec.Pipeline{
				On:   spec.Triggers{Push: &spec.PushTrigger{}, PullRequest: &spec.PullRequestTrigger{}},
				Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{step("x")}}},
			},
		},
		{
			name: "empty on list",
			src: `on: []
jobs: {a: {steps: [x]}}
`,
			want: &spec.Pipeline{Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{step("x")}}}},
		},
		{
			name: "empty on mapping",
			src: `on: {}
jobs: {a: {steps: [x]}}
`,
			want: &spec.Pipeline{Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{step("x")}}}},
		},
		{
			name: "on with every filter",
			src: `on:
  push:
    branches: [main, "release/**"]
    branches-ignore: "release/old-*"
    tags: ["v*"]
    paths: ["src/**", go.mod]
    paths-ignore: ["**/*.md"]
  pull_request:
    branches: main
    branches-ignore: [wip/*]
    paths: [src/**]
    paths-ignore: ["docs/**"]
  schedule:
    - cron: "0 3 * * *"
    - cron: "@every 6h"
    - cron: "CRON_TZ=UTC 30 2 * * MON-FRI"
jobs: {a: {steps: [x]}}
`,
			want: &spec.Pipeline{
				On: spec.Triggers{
					Push: &spec.PushTrigger{
						Branches:       []string{"main", "release/**"},
						BranchesIgnore: []string{"release/old-*"},
						Tags:           []string{"v*"},
						Paths:          []string{"src/**", "go.mod"},
						PathsIgnore:    []string{"**/*.md"},
					},
					PullRequest: &spec.PullRequestTrigger{
						Branches:       []string{"main"},
						BranchesIgnore: []string{"wip/*"},
						Paths:          []string{"src/**"},
						PathsIgnore:    []string{"docs/**"},
					},
					Schedule: []spec.Schedule{
						{Cron: "0 3 * * *"},
						{Cron: "@every 6h"},
						{Cron: "CRON_TZ=UTC 30 2 * * MON-FRI"},
					},
				},
				Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{step("x")}}},
			},
		},
		{
			name: "empty push and pull_request",
			src: `on:
  push:
  pull_request: {}
jobs: {a: {steps: [x]}}
`,
			want: &spec.Pipeline{
				On:   spec.Triggers{Push: &spec.PushTrigger{}, PullRequest: &spec.PullRequestTrigger{}},
				Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{step("x")}}},
			},
		},
		{
			name: "values are text as written",
			src: `env:
  CGO_ENABLED: 0
  GO: 1.20
  DEBUG: true
  EMPTY: ""
  IMAGE: registry.example.com/app:${{ commit }}
jobs:
  a:
    matrix:
      go: [1.20, 1.21]
    steps: [x]
`,
			want: &spec.Pipeline{
				Env: map[string]string{"CGO_ENABLED": "0", "GO": "1.20", "DEBUG": "true", "EMPTY": "", "IMAGE": "registry.example.com/app:${{ commit }}"},
				Jobs: []*spec.Job{{
					Name:   "a",
					Matrix: &spec.Matrix{Axes: []spec.Axis{{Name: "go", Values: []string{"1.20", "1.21"}}}},
					Steps:  []*spec.Step{step("x")},
				}},
			},
		},
		{
			name: "a job with every key",
			src: `jobs:
  build: {steps: [make]}
  lint: {steps: [lint]}
  test:
    needs: [build, lint]
    if: branch == "main" && event == "push"
    runs-on: [linux, docker]
    image: golang:${{ matrix.go }}
    services:
      db:
        image: postgres:16
        env: {POSTGRES_PASSWORD: test}
        command: [postgres, -c, fsync=off]
        ready:
          run: pg_isready -h db
          interval: 1s
          timeout: 1m
      cache:
        image: redis
        command: redis-server --save ""
    locks: staging-db
    artifacts: [dist/*, "coverage/**"]
    secrets: [TOKEN, NPM_TOKEN]
    env: {GOFLAGS: -mod=readonly}
    matrix:
      go: ["1.22", "1.23"]
      os: linux
    timeout: 1h30m
    steps:
      - go vet ./...
      - name: unit tests
        run: |
          go test ./...
          go test -race ./...
        env: {COVERAGE: "1"}
        timeout: 10m
        retry: 2
        if: failure()
        working-directory: service/api
`,
			want: &spec.Pipeline{
				Jobs: []*spec.Job{
					{Name: "build", Steps: []*spec.Step{step("make")}},
					{Name: "lint", Steps: []*spec.Step{step("lint")}},
					{
						Name:    "test",
						Needs:   []string{"build", "lint"},
						If:      `branch == "main" && event == "push"`,
						RunsOn:  []string{"linux", "docker"},
						Image:   "golang:${{ matrix.go }}",
						Locks:   []string{"staging-db"},
						Secrets: []string{"TOKEN", "NPM_TOKEN"},
						Services: []*spec.Service{
							{
								Name:    "db",
								Image:   "postgres:16",
								Env:     map[string]string{"POSTGRES_PASSWORD": "test"},
								Command: []string{"postgres", "-c", "fsync=off"},
								Ready:   &spec.Ready{Run: "pg_isready -h db", Interval: time.Second, Timeout: time.Minute},
							},
							{Name: "cache", Image: "redis", Command: []string{`redis-server --save ""`}},
						},
						Artifacts: []string{"dist/*", "coverage/**"},
						Env:       map[string]string{"GOFLAGS": "-mod=readonly"},
						Matrix: &spec.Matrix{Axes: []spec.Axis{
							{Name: "go", Values: []string{"1.22", "1.23"}},
							{Name: "os", Values: []string{"linux"}},
						}},
						Timeout: 90 * time.Minute,
						Steps: []*spec.Step{
							step("go vet ./..."),
							{
								Name:             "unit tests",
								Run:              "go test ./...\ngo test -race ./...\n",
								Env:              map[string]string{"COVERAGE": "1"},
								Timeout:          10 * time.Minute,
								Retry:            2,
								If:               "failure()",
								WorkingDirectory: "service/api",
							},
						},
					},
				},
			},
		},
		{
			name: "matrix with include and exclude",
			src: `jobs:
  test:
    matrix:
      go: ["1.22", "1.23"]
      os: [linux, windows]
      exclude:
        - {go: "1.22", os: windows}
      include:
        - {go: "1.23", os: linux, race: "on"}
    steps: [go test ./...]
  only-include:
    matrix:
      include:
        - {target: arm64}
        - {target: amd64}
    steps: [make]
`,
			want: &spec.Pipeline{
				Jobs: []*spec.Job{
					{
						Name: "test",
						Matrix: &spec.Matrix{
							Axes: []spec.Axis{
								{Name: "go", Values: []string{"1.22", "1.23"}},
								{Name: "os", Values: []string{"linux", "windows"}},
							},
							Exclude: []map[string]string{{"go": "1.22", "os": "windows"}},
							Include: []map[string]string{{"go": "1.23", "os": "linux", "race": "on"}},
						},
						Steps: []*spec.Step{step("go test ./...")},
					},
					{
						Name:   "only-include",
						Matrix: &spec.Matrix{Include: []map[string]string{{"target": "arm64"}, {"target": "amd64"}}},
						Steps:  []*spec.Step{step("make")},
					},
				},
			},
		},
		{
			name: "environments only, with every key",
			src: `environments:
  staging:
    deploy: {branch: main}
    url: https://staging.example.com
    secrets: DEPLOY_KEY
    runs-on: deployer
    image: alpine:${{ env.ALPINE }}
    env: {ALPINE: "3.20"}
    timeout: 15m
    steps:
      - ./deploy.sh staging
  production:
    promote-from: staging
    groups: [releasers]
    approvals:
      required: 2
      groups: [releasers, sre]
      author-may-approve: true
    rollout:
      hosts: web
      batch: 3
      health:
        url: http://{host}:8080/healthz
        timeout: 5s
        interval: 10s
        retries: 3
    freeze:
      - cron: "0 16 * * 5"
        duration: 64h
        reason: no deploys over the weekend
  canary:
    promote-from: production
    approvals: {}
    rollout: {hosts: canary}
`,
			want: &spec.Pipeline{
				Environments: []*spec.Environment{
					{
						Name:         "staging",
						DeployBranch: "main",
						URL:          "https://staging.example.com",
						Secrets:      []string{"DEPLOY_KEY"},
						RunsOn:       []string{"deployer"},
						Image:        "alpine:${{ env.ALPINE }}",
						Env:          map[string]string{"ALPINE": "3.20"},
						Timeout:      15 * time.Minute,
						Steps:        []*spec.Step{step("./deploy.sh staging")},
					},
					{
						Name:        "production",
						PromoteFrom: "staging",
						Groups:      []string{"releasers"},
						Approvals:   &spec.Approvals{Required: 2, Groups: []string{"releasers", "sre"}, AuthorMayApprove: true},
						Rollout: &spec.Rollout{Hosts: "web", Batch: 3, Health: &spec.Health{
							URL: "http://{host}:8080/healthz", Timeout: 5 * time.Second, Interval: 10 * time.Second, Successes: 3, Retries: 3,
						}},
						Freeze: []*spec.Freeze{{Cron: "0 16 * * 5", Duration: 64 * time.Hour, Reason: "no deploys over the weekend"}},
					},
					{
						// The defaults: one approval, batches of one.
						Name:        "canary",
						PromoteFrom: "production",
						Approvals:   &spec.Approvals{Required: 1},
						Rollout:     &spec.Rollout{Hosts: "canary", Batch: 1},
					},
				},
			},
		},
		{
			name: "anchors and aliases",
			src: `env: &common
  GOFLAGS: -mod=readonly
jobs:
  test:
    env: *common
    steps: &go-steps
      - go vet ./...
      - &race
        run: go test -race ./...
        timeout: 10m
  again:
    needs: test
    steps: *go-steps
  race-only:
    steps: [*race]
`,
			want: &spec.Pipeline{
				Env: map[string]string{"GOFLAGS": "-mod=readonly"},
				Jobs: []*spec.Job{
					{
						Name:  "test",
						Env:   map[string]string{"GOFLAGS": "-mod=readonly"},
						Steps: []*spec.Step{step("go vet ./..."), {Run: "go test -race ./...", Timeout: 10 * time.Minute}},
					},
					{
						Name:  "again",
						Needs: []string{"test"},
						Steps: []*spec.Step{step("go vet ./..."), {Run: "go test -race ./...", Timeout: 10 * time.Minute}},
					},
					{Name: "race-only", Steps: []*spec.Step{{Run: "go test -race ./...", Timeout: 10 * time.Minute}}},
				},
			},
		},
		{
			name: "an alias as a job",
			src: `jobs:
  a: &job
    steps: [make]
  b: *job
`,
			want: &spec.Pipeline{Jobs: []*spec.Job{
				{Name: "a", Steps: []*spec.Step{step("make")}},
				{Name: "b", Steps: []*spec.Step{step("make")}},
			}},
		},
		{
			name: "conditions and templates in every form",
			src: `jobs:
  a:
    if: ${{ always() }}
    steps:
      - run: echo '${{ matrix.go }}' "${{ needs.b.status }}" ${{ env.X + "y" }}
        if: 'success() || cancelled()'
  b:
    if: |
      branch == "main"
        || tag startsWith "v"
    steps: [x]
`,
			want: &spec.Pipeline{Jobs: []*spec.Job{
				{
					Name: "a",
					If:   "${{ always() }}",
					Steps: []*spec.Step{{
						Run: `echo '${{ matrix.go }}' "${{ needs.b.status }}" ${{ env.X + "y" }}`,
						If:  "success() || cancelled()",
					}},
				},
				{Name: "b", If: "branch == \"main\"\n  || tag startsWith \"v\"\n", Steps: []*spec.Step{step("x")}},
			}},
		},
		{
			name: "comments, document marker and byte order mark",
			src:  "\ufeff# a pipeline\n---\njobs: # the jobs\n  a: {steps: [x]} # one\n",
			want: &spec.Pipeline{Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{step("x")}}}},
		},
		{
			name: "names with dots, dashes, underscores and digits",
			src: `jobs:
  1st: {steps: [x]}
  go1.23_linux-amd64: {needs: 1st, steps: [x]}
  _private: {steps: [x]}
`,
			want: &spec.Pipeline{Jobs: []*spec.Job{
				{Name: "1st", Steps: []*spec.Step{step("x")}},
				{Name: "go1.23_linux-amd64", Needs: []string{"1st"}, Steps: []*spec.Step{step("x")}},
				{Name: "_private", Steps: []*spec.Step{step("x")}},
			}},
		},
		{
			name: "retry bounds",
			src: `jobs:
  a:
    steps:
      - {run: x, retry: 0}
      - {run: y, retry: 10}
`,
			want: &spec.Pipeline{Jobs: []*spec.Job{{Name: "a", Steps: []*spec.Step{{Run: "x"}, {Run: "y", Retry: spec.MaxRetry}}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := spec.Parse("p.yml", []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse(%s) = %v, want no error", tt.name, err)
			}
			if diff := cmp.Diff(tt.want, got, ignorePos); diff != "" {
				t.Errorf("Parse(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestParsePositions(t *testing.T) {
	t.Parallel()
	src := `on:
  schedule:
    - cron: "0 3 * * *"
jobs:
  build:
    steps: [make]
  test:
    needs: [build]
    if: always()
    steps:
      - go test
      - name: race
        run: go test -race
        if: failure()
environments:
  prod:
    freeze:
      - {cron: "0 16 * * 5", duration: 64h}
    steps: [deploy]
`
	p, err := spec.Parse("p.yml", []byte(src))
	if err != nil {
		t.Fatalf("Parse = %v, want no error", err)
	}
	test := p.Job("test")
	if test == nil {
		t.Fatalf("Job(%q) = nil, want the job", "test")
	}
	tests := []struct {
		what      string
		got, want spec.Pos
	}{
		{"schedule cron", p.On.Schedule[0].Pos, spec.Pos{Line: 3, Col: 13}},
		{"job build", p.Job("build").Pos, spec.Pos{Line: 5, Col: 3}},
		{"job test", test.Pos, spec.Pos{Line: 7, Col: 3}},
		{"needs", test.NeedsPos, spec.Pos{Line: 8, Col: 12}},
		{"job if", test.IfPos, spec.Pos{Line: 9, Col: 9}},
		{"shorthand step", test.Steps[0].Pos, spec.Pos{Line: 11, Col: 9}},
		{"shorthand run", test.Steps[0].RunPos, spec.Pos{Line: 11, Col: 9}},
		{"mapping step", test.Steps[1].Pos, spec.Pos{Line: 12, Col: 9}},
		{"step run", test.Steps[1].RunPos, spec.Pos{Line: 13, Col: 14}},
		{"step if", test.Steps[1].IfPos, spec.Pos{Line: 14, Col: 13}},
		{"environment", p.Environments[0].Pos, spec.Pos{Line: 16, Col: 3}},
		{"freeze", p.Environments[0].Freeze[0].Pos, spec.Pos{Line: 18, Col: 9}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("Parse: %s at %v, want %v", tt.what, tt.got, tt.want)
		}
	}
	if got := p.Job("nope"); got != nil {
		t.Errorf("Job(%q) = %v, want nil", "nope", got)
	}
}

// errLines is an error from Parse as the FILE:LINE:COL: message lines a user sees.
func errLines(t *testing.T, err error) []string {
	t.Helper()
	var list spec.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse error is %T (%v), want spec.ErrorList", err, err)
	}
	var out []string
	for _, e := range list {
		out = append(out, e.Error())
	}
	if joined := strings.Join(out, "\n"); joined != err.Error() {
		t.Errorf("ErrorList.Error() = %q, want its errors one a line: %q", err.Error(), joined)
	}
	return out
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	knownJob := "(known: needs, if, runs-on, image, pull, services, locks, artifacts, secrets, env, matrix, timeout, steps)"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// The file as a whole.
		{
			name: "empty file",
			src:  "",
			want: []string{`p.yml:1:1: file is empty: a pipeline needs at least one job under "jobs"`},
		},
		{
			name: "unknown pull policy",
			src:  "jobs:\n  a:\n    image: x\n    pull: sometimes\n    steps: [\"true\"]\n",
			want: []string{`p.yml:4:11: job "a": pull: "sometimes": want always, if-not-present or never`},
		},
		{
			name: "only comments",
			src:  "# nothing yet\n\n",
			want: []string{`p.yml:1:1: file is empty: a pipeline needs at least one job under "jobs"`},
		},
		{
			name: "only a document marker",
			src:  "---\n",
			want: []string{`p.yml:1:1: file is empty: a pipeline needs at least one job under "jobs"`},
		},
		{
			name: "a scalar",
			src:  "make test\n",
			want: []string{`p.yml:1:1: pipeline: want a mapping, got "make test"`},
		},
		{
			name: "a list",
			src:  "- make test\n",
			want: []string{`p.yml:1:1: pipeline: want a mapping, got a list`},
		},
		{
			name: "no jobs",
			src:  "env: {A: b}\n",
			want: []string{`p.yml:1:1: pipeline: no jobs: add a "jobs" mapping with at least one job`},
		},
		{
			name: "misspelt top-level key",
			src:  "job:\n  a: {steps: [x]}\n",
			want: []string{
				`p.yml:1:1: pipeline: unknown key "job"; did you mean "jobs"?`,
				`p.yml:1:1: pipeline: no jobs: add a "jobs" mapping with at least one job`,
			},
		},
		{
			name: "unknown top-level key far from any",
			src:  "variables: {}\njobs: {a: {steps: [x]}}\n",
			want: []string{`p.yml:1:1: pipeline: unknown key "variables" (known: on, env, concurrency, jobs, environments)`},
		},

		// Malformed YAML.
		{
			name: "unclosed flow sequence",
			src:  "jobs:\n  a:\n    steps: [x]\n  b: [\n",
			want: []string{`p.yml:4:1: invalid YAML: did not find expected node content`},
		},
		{
			name: "tab indentation",
			src:  "jobs:\n\ta: {steps: [x]}\n",
			want: []string{`p.yml:2:1: invalid YAML: found character that cannot start any token`},
		},
		{
			name: "unclosed quote",
			src:  "jobs:\n  a:\n    steps: [\"x]\n",
			want: []string{`p.yml:3:1: invalid YAML: found unexpected end of stream`},
		},
		{
			name: "mapping value in a plain scalar",
			src:  "jobs: a: b\n",
			want: []string{`p.yml:1:1: invalid YAML: mapping values are not allowed in this context`},
		},
		{
			name: "bad indentation",
			src:  "jobs:\n  a:\n    steps: [x]\n   b: {steps: [x]}\n",
			// The YAML library gives the line where the enclosing mapping starts.
			want: []string{`p.yml:1:1: invalid YAML: did not find expected key`},
		},
		{
			name: "unknown anchor",
			src:  "jobs: *nope\n",
			want: []string{`p.yml:1:1: invalid YAML: unknown anchor 'nope' referenced`},
		},
		{
			name: "control character",
			src:  "jobs:\x01\n",
			want: []string{`p.yml:1:1: invalid YAML: control characters are not allowed`},
		},
		{
			name: "invalid UTF-8",
			src:  "jobs: \xff\n",
			want: []string{`p.yml:1:1: invalid YAML: invalid leading UTF-8 octet`},
		},

		// Keys.
		{
			name: "duplicate job names",
			src: `jobs:
  build: {steps: [a]}
  test: {steps: [b]}
  build: {steps: [c]}
`,
			want: []string{`p.yml:4:3: jobs: duplicate key "build" (first at line 2)`},
		},
		{
			name: "duplicate keys in a job and a step",
			src: `jobs:
  a:
    steps: [x]
    steps: [y]
  b:
    steps:
      - run: x
        run: y
`,
			want: []string{
				`p.yml:4:5: job "a": duplicate key "steps" (first at line 3)`,
				`p.yml:8:9: job "b": steps[0]: duplicate key "run" (first at line 7)`,
			},
		},
		{
			name: "duplicate top-level keys",
			src:  "jobs: {a: {steps: [x]}}\njobs: {b: {steps: [x]}}\n",
			want: []string{`p.yml:2:1: pipeline: duplicate key "jobs" (first at line 1)`},
		},
		{
			name: "duplicate env names",
			src:  "env:\n  A: 1\n  A: 2\njobs: {a: {steps: [x]}}\n",
			want: []string{`p.yml:3:3: env: duplicate key "A" (first at line 2)`},
		},
		{
			name: "unknown keys with did you mean",
			src: `on:
  pushh: {}
  pull_request:
    branch: main
jobs:
  a:
    step: [x]
    runs_on: linux
  b:
    steps:
      - run: x
        timout: 1m
        working_directory: x
`,
			want: []string{
				`p.yml:2:3: on: unknown key "pushh"; did you mean "push"?`,
				`p.yml:4:5: on.pull_request: unknown key "branch"; did you mean "branches"?`,
				`p.yml:6:3: job "a": no steps: add "steps" with at least one {run: ...}`,
				`p.yml:7:5: job "a": unknown key "step"; did you mean "steps"?`,
				`p.yml:8:5: job "a": unknown key "runs_on"; did you mean "runs-on"?`,
				`p.yml:12:9: job "b": steps[0]: unknown key "timout"; did you mean "timeout"?`,
				`p.yml:13:9: job "b": steps[0]: unknown key "working_directory"; did you mean "working-directory"?`,
			},
		},
		{
			name: "unknown key with a transposition",
			src:  "jobs:\n  a:\n    steps: [x]\n    nedes: b\n  b: {steps: [x]}\n",
			want: []string{`p.yml:4:5: job "a": unknown key "nedes"; did you mean "needs"?`},
		},
		{
			name: "unknown key far from any",
			src:  "jobs:\n  a:\n    steps: [x]\n    script: make\n",
			want: []string{`p.yml:4:5: job "a": unknown key "script" ` + knownJob},
		},
		{
			name: "the merge key is an unknown key",
			src: `jobs:
  a: &base
    steps: [x]
  b:
    <<: *base
    timeout: 1m
`,
			want: []string{
				`p.yml:4:3: job "b": no steps: add "steps" with at least one {run: ...}`,
				`p.yml:5:5: job "b": unknown key "<<" ` + knownJob,
			},
		},
		{
			name: "unknown keys everywhere else",
			src: `on:
  push: {branchs: main}
  schedule:
    - {cron: "0 * * * *", tz: UTC}
jobs:
  a:
    services:
      db: {image: pg, ports: [5432]}
      r:
        image: redis
        ready: {command: x}
    steps: [x]
environments:
  e:
    deploy: {branches: main}
    approvals: {count: 1}
    rollout:
      hosts: web
      batches: 2
      health: {url: x, retry: 1}
    freeze:
      - {cron: "0 * * * *", duration: 1h, why: x}
    steps: [x]
`,
			want: []string{
				`p.yml:2:10: on.push: unknown key "branchs"; did you mean "branches"?`,
				`p.yml:4:27: on.schedule[0]: unknown key "tz" (known: cron)`,
				`p.yml:8:23: job "a": services.db: unknown key "ports" (known: image, env, command, ready)`,
				`p.yml:11:17: job "a": services.r.ready: unknown key "command" (known: run, interval, timeout)`,
				`p.yml:15:14: environment "e": deploy: unknown key "branches"; did you mean "branch"?`,
				`p.yml:16:17: environment "e": approvals: unknown key "count" (known: required, groups, author-may-approve)`,
				`p.yml:19:7: environment "e": rollout: unknown key "batches"; did you mean "batch"?`,
				`p.yml:20:24: environment "e": rollout.health: unknown key "retry" (known: url, run, timeout, interval, successes, retries)`,
				`p.yml:22:43: environment "e": freeze[0]: unknown key "why" (known: cron, duration, reason)`,
			},
		},
		{
			name: "a key that is not a plain name",
			src:  "? [a, b]\n: 1\njobs: {a: {steps: [x]}}\n",
			want: []string{`p.yml:1:3: pipeline: a key must be a plain name, got a list`},
		},

		// Wrong types.
		{
			name: "wrong types",
			src: `env: [A]
jobs:
  a:
    needs: {b: 1}
    if: [x]
    runs-on: {linux: true}
    image: [golang]
    timeout: [1m]
    env: x
    steps:
      - run: [make]
        retry: {n: 1}
  b: make
  c:
`,
			want: []string{
				`p.yml:1:6: env: want a mapping, got a list`,
				`p.yml:4:12: job "a": needs: want a list, got a mapping`,
				`p.yml:5:9: job "a": if: want a single value, got a list`,
				`p.yml:6:14: job "a": runs-on: want a list, got a mapping`,
				`p.yml:7:12: job "a": image: want a single value, got a list`,
				`p.yml:8:14: job "a": timeout: want a single value, got a list`,
				`p.yml:9:10: job "a": env: want a mapping, got "x"`,
				`p.yml:11:14: job "a": steps[0].run: want a single value, got a list`,
				`p.yml:12:16: job "a": steps[0].retry: want a single value, got a mapping`,
				`p.yml:13:6: job "b": want a mapping, got "make"`,
				`p.yml:14:5: job "c": want a mapping, got nothing`,
			},
		},
		{
			name: "wrong types in lists and env values",
			src: `env:
  A: {x: 1}
  B:
jobs:
  a:
    runs-on: [linux, [docker]]
    steps: [x]
`,
			want: []string{
				`p.yml:2:6: env.A: want a single value, got a mapping`,
				`p.yml:3:5: env.B: want a single value, got nothing`,
				`p.yml:6:22: job "a": runs-on[1]: want a single value, got a list`,
			},
		},
		{
			name: "jobs not a mapping",
			src:  "jobs: [a, b]\n",
			want: []string{`p.yml:1:7: jobs: want a mapping, got a list`},
		},
		{
			name: "jobs empty",
			src:  "jobs: {}\n",
			want: []string{`p.yml:1:7: jobs: empty: add at least one job`},
		},
		{
			name: "jobs null",
			src:  "jobs:\n",
			want: []string{`p.yml:1:6: jobs: want a mapping, got nothing`},
		},

		// Steps.
		{
			name: "empty steps, a step without run, empty commands",
			src: `jobs:
  a:
    steps: []
  b:
    steps:
      - name: build
  c:
    steps: make
  d:
    steps:
      - ""
      - run: "  "
      - name: ""
        run: x
      -
`,
			want: []string{
				`p.yml:3:12: job "a": steps: empty: add at least one {run: ...}`,
				`p.yml:6:9: job "b": steps[0]: no "run": a step needs a command`,
				`p.yml:8:12: job "c": steps: want a list of steps, got "make"`,
				`p.yml:11:9: job "d": steps[0]: empty command`,
				`p.yml:12:14: job "d": steps[1].run: must not be empty`,
				`p.yml:13:15: job "d": steps[2].name: must not be empty`,
				`p.yml:15:8: job "d": steps[3]: want a mapping, got nothing`,
			},
		},
		{
			name: "working directory outside the workspace",
			src: `jobs:
  a:
    steps:
      - {run: x, working-directory: /etc}
      - {run: x, working-directory: a/../../b}
      - {run: x, working-directory: ..}
      - {run: x, working-directory: a/..b/c}
`,
			want: []string{
				`p.yml:4:37: job "a": steps[0].working-directory: must be a path inside the workspace, got "/etc"`,
				`p.yml:5:37: job "a": steps[1].working-directory: must be a path inside the workspace, got "a/../../b"`,
				`p.yml:6:37: job "a": steps[2].working-directory: must be a path inside the workspace, got ".."`,
			},
		},

		// needs.
		{
			name: "needs a missing job, with a hint",
			src: `jobs:
  build: {steps: [x]}
  test:
    needs: [biuld]
    steps: [x]
  deploy:
    needs: tset
    steps: [x]
`,
			want: []string{
				`p.yml:4:12: job "test" needs "biuld", which is not a job in this file; did you mean "build"?`,
				`p.yml:7:12: job "deploy" needs "tset", which is not a job in this file; did you mean "test"?`,
			},
		},
		{
			name: "needs a missing job, far from any",
			src: `jobs:
  build: {steps: [x]}
  test:
    needs: integration
    steps: [x]
`,
			want: []string{`p.yml:4:12: job "test" needs "integration", which is not a job in this file (known: build, test)`},
		},
		{
			name: "needs a missing job among many",
			src: `jobs:
  j01: {steps: [x]}
  j02: {steps: [x]}
  j03: {steps: [x]}
  j04: {steps: [x]}
  j05: {steps: [x]}
  j06: {steps: [x]}
  j07: {steps: [x]}
  j08: {steps: [x]}
  j09: {steps: [x]}
  j10: {steps: [x]}
  j11: {steps: [x]}
  j12: {steps: [x]}
  j13: {needs: integration, steps: [x]}
`,
			want: []string{`p.yml:14:16: job "j13" needs "integration", which is not a job in this file`},
		},
		{
			name: "needs an invalid name",
			src:  "jobs:\n  a: {needs: \"b c\", steps: [x]}\n",
			want: []string{
				`p.yml:2:14: job "a": needs: "b c" is not a valid name (letters, digits, '.', '-', '_')`,
				`p.yml:2:14: job "a" needs "b c", which is not a job in this file (known: a)`,
			},
		},
		{
			name: "self-need",
			src:  "jobs:\n  a:\n    needs: a\n    steps: [x]\n",
			want: []string{`p.yml:2:3: needs cycle: a -> a`},
		},
		{
			name: "needs cycle",
			src: `jobs:
  a: {needs: c, steps: [x]}
  b: {needs: a, steps: [x]}
  c: {needs: [b], steps: [x]}
  d: {needs: [a], steps: [x]}
`,
			want: []string{`p.yml:2:3: needs cycle: a -> c -> b -> a`},
		},
		{
			name: "two needs cycles",
			src: `jobs:
  a: {needs: b, steps: [x]}
  b: {needs: a, steps: [x]}
  c: {needs: [a, d], steps: [x]}
  d: {needs: c, steps: [x]}
`,
			want: []string{
				`p.yml:2:3: needs cycle: a -> b -> a`,
				`p.yml:4:3: needs cycle: c -> d -> c`,
			},
		},

		// Durations and numbers.
		{
			name: "bad durations",
			src: `jobs:
  a:
    timeout: 10
    steps:
      - {run: x, timeout: -1s}
      - {run: x, timeout: 0s}
      - {run: x, timeout: 1d}
      - {run: x, timeout: soon}
    services:
      db:
        image: pg
        ready: {run: x, interval: 0, timeout: 1 minute}
`,
			want: []string{
				`p.yml:3:14: job "a": timeout: invalid duration "10": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:5:27: job "a": steps[0].timeout: invalid duration "-1s": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:6:27: job "a": steps[1].timeout: invalid duration "0s": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:7:27: job "a": steps[2].timeout: invalid duration "1d": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:8:27: job "a": steps[3].timeout: invalid duration "soon": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:12:35: job "a": services.db.ready.interval: invalid duration "0": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:12:47: job "a": services.db.ready.timeout: invalid duration "1 minute": want a positive duration such as 30s, 10m or 1h30m`,
			},
		},
		{
			name: "retry out of range",
			src: `jobs:
  a:
    steps:
      - {run: x, retry: 11}
      - {run: x, retry: -1}
      - {run: x, retry: two}
      - {run: x, retry: 1.5}
`,
			want: []string{
				`p.yml:4:25: job "a": steps[0].retry: want a whole number from 0 to 10, got "11"`,
				`p.yml:5:25: job "a": steps[1].retry: want a whole number from 0 to 10, got "-1"`,
				`p.yml:6:25: job "a": steps[2].retry: want a whole number from 0 to 10, got "two"`,
				`p.yml:7:25: job "a": steps[3].retry: want a whole number from 0 to 10, got "1.5"`,
			},
		},

		// Cron.
		{
			name: "bad cron in on.schedule",
			src: `on:
  schedule:
    - cron: "61 * * * *"
    - cron: "* * *"
    - cron: "TZ=UTC"
    - cron: "TZ=Nowhere/Special 0 3 * * *"
    - cron: "@fortnightly"
    - crn: "0 * * * *"
    - "0 * * * *"
    - cron:
jobs: {a: {steps: [x]}}
`,
			want: []string{
				`p.yml:3:13: on.schedule[0].cron: invalid cron expression "61 * * * *": end of range (61) above maximum (59): 61`,
				`p.yml:4:13: on.schedule[1].cron: invalid cron expression "* * *": expected exactly 5 fields, found 3: [* * *]`,
				`p.yml:5:13: on.schedule[2].cron: invalid cron expression "TZ=UTC": a time zone needs a schedule after it, such as "TZ=Europe/Berlin 0 3 * * *"`,
				`p.yml:6:13: on.schedule[3].cron: invalid cron expression "TZ=Nowhere/Special 0 3 * * *": provided bad location Nowhere/Special: unknown time zone Nowhere/Special`,
				`p.yml:7:13: on.schedule[4].cron: invalid cron expression "@fortnightly": unrecognized descriptor: @fortnightly`,
				`p.yml:8:7: on.schedule[5]: unknown key "crn"; did you mean "cron"?`,
				`p.yml:8:7: on.schedule[5]: cron is required`,
				`p.yml:9:7: on.schedule[6]: want a mapping, got "0 * * * *"`,
				`p.yml:9:7: on.schedule[6]: cron is required`,
				`p.yml:10:7: on.schedule[7]: cron is required`,
				`p.yml:10:12: on.schedule[7].cron: want a single value, got nothing`,
			},
		},
		{
			name: "schedule not a list",
			src:  "on:\n  schedule: \"0 3 * * *\"\njobs: {a: {steps: [x]}}\n",
			want: []string{`p.yml:2:13: on.schedule: want a list of {cron: ...}, got "0 3 * * *"`},
		},
		{
			name: "bad cron in freeze",
			src: `environments:
  prod:
    freeze:
      - {cron: "0 25 * * *", duration: 1h}
      - {cron: "CRON_TZ=UTC", duration: 1h}
      - {cron: "0 16 * * 5"}
      - {duration: 1h, reason: x}
      - {cron: "0 16 * * 5", duration: forever}
    steps: [x]
  stage:
    freeze: {cron: "0 16 * * 5", duration: 1h}
    steps: [x]
`,
			want: []string{
				`p.yml:4:16: environment "prod": freeze[0].cron: invalid cron expression "0 25 * * *": end of range (25) above maximum (23): 25`,
				`p.yml:5:16: environment "prod": freeze[1].cron: invalid cron expression "CRON_TZ=UTC": a time zone needs a schedule after it, such as "TZ=Europe/Berlin 0 3 * * *"`,
				`p.yml:6:9: environment "prod": freeze[2]: cron and duration are both required`,
				`p.yml:7:9: environment "prod": freeze[3]: cron and duration are both required`,
				`p.yml:8:9: environment "prod": freeze[4]: cron and duration are both required`,
				`p.yml:8:40: environment "prod": freeze[4].duration: invalid duration "forever": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:11:13: environment "stage": freeze: want a list of {cron, duration, reason}, got a mapping`,
			},
		},

		// Names.
		{
			name: "bad names",
			src: `jobs:
  -lint: {steps: [x]}
  .hidden: {steps: [x]}
  "with space": {steps: [x]}
  "test[go=1]": {steps: [x]}
  ok:
    locks: [db, "a/b"]
    secrets: [TOKEN, my-token, 1ST]
    env: {1A: x, A-B: y, _OK: z}
    services:
      "my db": {image: pg}
    matrix:
      "go version": [1]
    steps: [x]
environments:
  "prod env": {steps: [x]}
  prod:
    approvals: {groups: [release team]}
    secrets: [DEPLOY-KEY]
    steps: [x]
`,
			want: []string{
				`p.yml:2:3: jobs: "-lint" is not a valid job name (letters, digits, '.', '-', '_'; not starting with '.' or '-')`,
				`p.yml:3:3: jobs: ".hidden" is not a valid job name (letters, digits, '.', '-', '_'; not starting with '.' or '-')`,
				`p.yml:4:3: jobs: "with space" is not a valid job name (letters, digits, '.', '-', '_'; not starting with '.' or '-')`,
				`p.yml:5:3: jobs: "test[go=1]" is not a valid job name (letters, digits, '.', '-', '_'; not starting with '.' or '-')`,
				`p.yml:7:12: job "ok": locks: "a/b" is not a valid name (letters, digits, '.', '-', '_')`,
				`p.yml:8:14: job "ok": secrets: "my-token" is not a valid variable name`,
				`p.yml:8:14: job "ok": secrets: "1ST" is not a valid variable name`,
				`p.yml:9:11: job "ok": env: "1A" is not a valid variable name`,
				`p.yml:9:18: job "ok": env: "A-B" is not a valid variable name`,
				`p.yml:11:7: job "ok": services: "my db" is not a valid service name`,
				`p.yml:13:7: job "ok": matrix: "go version" is not a valid axis name`,
				`p.yml:13:7: job "ok": matrix: empty: give at least one axis, such as go: ["1.22", "1.23"]`,
				`p.yml:16:3: environments: "prod env" is not a valid environment name`,
				`p.yml:18:25: environment "prod": approvals.groups: "release team" is not a valid name (letters, digits, '.', '-', '_')`,
				`p.yml:19:14: environment "prod": secrets: "DEPLOY-KEY" is not a valid variable name`,
			},
		},

		// Globs and events.
		{
			name: "bad globs and events",
			src: `on:
  push:
    branches: ["[main"]
    tags: "v{1"
  pull_request:
    paths-ignore: [docs, "a[b"]
jobs:
  a:
    artifacts: ["dist/[x"]
    steps: [x]
environments:
  e:
    deploy: {branch: "rel[ease"}
    steps: [x]
`,
			want: []string{
				`p.yml:3:15: on.push.branches: invalid pattern "[main"`,
				`p.yml:4:11: on.push.tags: invalid pattern "v{1"`,
				`p.yml:6:19: on.pull_request.paths-ignore: invalid pattern "a[b"`,
				`p.yml:9:16: job "a": artifacts: invalid pattern "dist/[x"`,
				`p.yml:13:22: environment "e": deploy.branch: invalid pattern "rel[ease"`,
			},
		},
		{
			name: "unknown events",
			src:  "on: [push, pr, schedule]\njobs: {a: {steps: [x]}}\n",
			want: []string{
				`p.yml:1:5: on: unknown event "pr" (known: push, pull_request)`,
				`p.yml:1:5: on: unknown event "schedule" (known: push, pull_request)`,
			},
		},
		{
			name: "misspelt event",
			src:  "on: pull-request\njobs: {a: {steps: [x]}}\n",
			want: []string{`p.yml:1:5: on: unknown event "pull-request"; did you mean "pull_request"?`},
		},

		// Expressions.
		{
			name: "bad expressions in if",
			src: `jobs:
  a:
    if: brnach == "main"
    steps:
      - run: x
        if: branch == "main" && evnt == "push"
      - run: x
        if: ${{ github.ref == "main" }}
      - run: x
        if: branch ==
      - run: x
        if: 'branch == "main'
      - run: x
        if: needs.a.state == "success"
      - run: x
        if: "  "
      - run: x
        if: ${{ }}
`,
			want: []string{
				`p.yml:3:9: job "a": if: expression "brnach == \"main\"": unknown name brnach`,
				`p.yml:6:33: job "a": steps[0].if: expression "branch == \"main\" && evnt == \"push\"": unknown name evnt`,
				`p.yml:8:17: job "a": steps[1].if: expression "github.ref == \"main\"": unknown name github`,
				`p.yml:10:21: job "a": steps[2].if: expression "branch ==": unexpected token EOF`,
				// Quoted: the column is the value's.
				`p.yml:12:13: job "a": steps[3].if: expression "branch == \"main": literal not terminated`,
				`p.yml:14:21: job "a": steps[4].if: expression "needs.a.state == \"success\"": type eval.Need has no field state`,
				`p.yml:16:13: job "a": steps[5].if: expression "": empty condition`,
				`p.yml:18:13: job "a": steps[6].if: expression "": empty condition`,
			},
		},
		{
			name: "bad expressions in templates",
			src: `env:
  A: ${{ comit }}
jobs:
  a:
    image: golang:${{ matrix.go
    env:
      B: x-${{ }}
    steps:
      - echo ${{ branch + }}
      - run: echo ${{ secrets.TOKEN }}
      - run: |
          echo ${{ nope }}
      - run: echo "${{ tag }}" ${{ brnch }}
        env: {C: "${{ env.C }"}
`,
			want: []string{
				`p.yml:2:6: env.A: expression "comit": unknown name comit`,
				`p.yml:5:19: job "a": image: expression "${{ matrix.go": unterminated ${{: missing }}`,
				`p.yml:7:12: job "a": env.B: expression "${{ }}": empty ${{ }}`,
				`p.yml:9:14: job "a": steps[0]: expression "branch +": unexpected token EOF`,
				`p.yml:10:19: job "a": steps[1].run: expression "secrets.TOKEN": unknown name secrets`,
				`p.yml:11:14: job "a": steps[2].run: expression "nope": unknown name nope`,
				`p.yml:13:32: job "a": steps[3].run: expression "brnch": unknown name brnch`,
				`p.yml:14:18: job "a": steps[3].env.C: expression "${{ env.C }": unterminated ${{: missing }}`,
			},
		},
		{
			name: "expression columns count characters",
			src:  "jobs:\n  a:\n    steps:\n      - run: é ✓ ${{ nope }}\n",
			want: []string{`p.yml:4:18: job "a": steps[0].run: expression "nope": unknown name nope`},
		},

		// Matrix.
		{
			name: "bad matrices",
			src: `jobs:
  a:
    matrix: {}
    steps: [x]
  b:
    matrix: {go: []}
    steps: [x]
  c:
    matrix: [go]
    steps: [x]
  d:
    matrix:
      go: [1, 2, 1]
      include: {go: 3}
      exclude: [{go: 1, os: x, goo: 2}, 5]
    steps: [x]
  e:
    matrix:
      go:
    steps: [x]
`,
			want: []string{
				`p.yml:3:13: job "a": matrix: empty: give at least one axis, such as go: ["1.22", "1.23"]`,
				`p.yml:6:18: job "b": matrix.go: empty: an axis needs at least one value`,
				`p.yml:9:13: job "c": matrix: want a mapping, got a list`,
				`p.yml:9:13: job "c": matrix: empty: give at least one axis, such as go: ["1.22", "1.23"]`,
				`p.yml:13:7: job "d": matrix.exclude: "goo" is not an axis of this matrix; did you mean "go"?`,
				`p.yml:13:7: job "d": matrix.exclude: "os" is not an axis of this matrix (known: go)`,
				`p.yml:13:11: job "d": matrix.go: duplicate value "1"`,
				`p.yml:14:16: job "d": matrix.include: want a list of mappings, got a mapping`,
				`p.yml:15:41: job "d": matrix.exclude[1]: want a mapping, got "5"`,
				`p.yml:19:10: job "e": matrix.go: want a list, got nothing`,
			},
		},
		{
			name: "matrix values that would make names alike",
			src: `jobs:
  a:
    matrix: {a: ["x,b=y", ""], include: [{a: x, b: y}]}
    steps: [x]
`,
			want: []string{
				`p.yml:3:17: job "a": matrix.a: value "x,b=y": a matrix value may not be empty or contain , = [ ] or a newline (it becomes part of the job's name)`,
				`p.yml:3:17: job "a": matrix.a: value "": a matrix value may not be empty or contain , = [ ] or a newline (it becomes part of the job's name)`,
			},
		},
		{
			name: "exclude removes every cell",
			src: `jobs:
  a:
    matrix: {go: [1, 2], os: [x], exclude: [{go: 1}, {go: 2, os: x}]}
    steps: [x]
  b:
    matrix: {go: [1, 2], exclude: [{go: 1}]}
    steps: [x]
`,
			want: []string{`p.yml:3:13: job "a": matrix: exclude removes every cell: the job would never run`},
		},
		{
			name: "bad include values",
			src: `jobs:
  a:
    matrix:
      include:
        - {go: [1, 2]}
    steps: [x]
`,
			want: []string{`p.yml:5:16: job "a": matrix.include[0].go: want a single value, got a list`},
		},

		// Services.
		{
			name: "services",
			src: `jobs:
  a:
    services:
      db:
        env: {A: b}
      cache:
        image: ""
      queue: rabbitmq
    steps: [x]
`,
			want: []string{
				`p.yml:4:7: job "a": services.db: image is required`,
				`p.yml:6:7: job "a": services.cache: image is required`,
				`p.yml:7:16: job "a": services.cache.image: must not be empty`,
				`p.yml:8:14: job "a": services.queue: want a mapping, got "rabbitmq"`,
			},
		},

		// Environments.
		{
			name: "promote-from unknown",
			src: `environments:
  staging: {steps: [x]}
  prod:
    promote-from: stagign
    steps: [x]
  dr:
    promote-from: elsewhere
    steps: [x]
`,
			want: []string{
				`p.yml:3:3: environment "prod": promote-from "stagign", which is not an environment in this file; did you mean "staging"?`,
				`p.yml:6:3: environment "dr": promote-from "elsewhere", which is not an environment in this file (known: staging, prod, dr)`,
			},
		},
		{
			name: "promote-from cycles",
			src: `environments:
  canary:
    promote-from: prod
    steps: [x]
  prod:
    promote-from: staging
    steps: [x]
  staging:
    promote-from: prod
    steps: [x]
  loop:
    promote-from: loop
    steps: [x]
`,
			want: []string{
				`p.yml:5:3: promote-from cycle: prod <- staging <- prod`,
				`p.yml:11:3: promote-from cycle: loop <- loop`,
			},
		},
		{
			name: "environment rules",
			src: `environments:
  staging: {steps: [x]}
  prod:
    deploy: {branch: main}
    promote-from: staging
    steps: [x]
  empty: {}
  bare:
    url: ""
    approvals: {required: 101, author-may-approve: yes}
    rollout:
      batch: 0
      health: {timeout: 1s, retries: 1000}
  noop: nothing
  checked:
    steps: [x]
    health: {url: "http://x/${{ bad", run: ./check, timeout: 0s, successes: 0}
`,
			want: []string{
				`p.yml:3:3: environment "prod": deploy.branch and promote-from exclude each other: a release comes here either from a branch or from "staging"`,
				`p.yml:7:3: environment "empty": no steps: a deployment needs "steps" (or a "rollout")`,
				`p.yml:9:10: environment "bare": url: must not be empty`,
				`p.yml:10:27: environment "bare": approvals.required: want a whole number from 0 to 100, got "101"`,
				`p.yml:10:52: environment "bare": approvals.author-may-approve: want true or false, got "yes"`,
				`p.yml:12:7: environment "bare": rollout: hosts is required`,
				`p.yml:12:14: environment "bare": rollout.batch: want a whole number from 1 to 10000, got "0"`,
				`p.yml:13:15: environment "bare": rollout.health: url or run is required`,
				`p.yml:13:38: environment "bare": rollout.health.retries: want a whole number from 0 to 100, got "1000"`,
				`p.yml:14:9: environment "noop": want a mapping, got "nothing"`,
				`p.yml:17:13: environment "checked": health: url and run are both set: a check is one or the other`,
				`p.yml:17:19: environment "checked": health.url: expression "${{ bad": unterminated ${{: missing }}`,
				`p.yml:17:62: environment "checked": health.timeout: invalid duration "0s": want a positive duration such as 30s, 10m or 1h30m`,
				`p.yml:17:77: environment "checked": health.successes: want a whole number from 1 to 100, got "0"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := spec.Parse("p.yml", []byte(tt.src))
			if p != nil {
				t.Errorf("Parse(%s) = %v, want a nil pipeline", tt.name, p)
			}
			if err == nil {
				t.Fatalf("Parse(%s) = nil error, want %q", tt.name, tt.want)
			}
			if diff := cmp.Diff(tt.want, errLines(t, err)); diff != "" {
				t.Errorf("Parse(%s) errors mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

// TestParseReportsAllErrorsInFileOrder checks that one problem does not hide
// the others, and that errors found in later passes (needs, promote-from)
// and inside-out (a job's missing steps after its keys) come out in file order.
func TestParseReportsAllErrorsInFileOrder(t *testing.T) {
	t.Parallel()
	src := `on:
  push: {branches: ["[x"]}
env:
  1BAD: x
jobs:
  build:
    runs_on: linux
  test:
    needs: [biuld]
    if: brnch == "x"
    steps:
      - run: echo ${{ nope }}
        retry: 99
      - name: empty
  deploy:
    needs: deploy
    steps: [x]
environments:
  prod:
    promote-from: stage
    steps: [x]
`
	want := []string{
		`ci.yml:2:20: on.push.branches: invalid pattern "[x"`,
		`ci.yml:4:3: env: "1BAD" is not a valid variable name`,
		`ci.yml:6:3: job "build": no steps: add "steps" with at least one {run: ...}`,
		`ci.yml:7:5: job "build": unknown key "runs_on"; did you mean "runs-on"?`,
		`ci.yml:9:12: job "test" needs "biuld", which is not a job in this file; did you mean "build"?`,
		`ci.yml:10:9: job "test": if: expression "brnch == \"x\"": unknown name brnch`,
		`ci.yml:12:19: job "test": steps[0].run: expression "nope": unknown name nope`,
		`ci.yml:13:16: job "test": steps[0].retry: want a whole number from 0 to 10, got "99"`,
		`ci.yml:14:9: job "test": steps[1]: no "run": a step needs a command`,
		`ci.yml:15:3: needs cycle: deploy -> deploy`,
		`ci.yml:19:3: environment "prod": promote-from "stage", which is not an environment in this file (known: prod)`,
	}
	p, err := spec.Parse("ci.yml", []byte(src))
	if p != nil || err == nil {
		t.Fatalf("Parse = %v, %v; want nil and errors", p, err)
	}
	if diff := cmp.Diff(want, errLines(t, err)); diff != "" {
		t.Errorf("Parse errors mismatch (-want +got):\n%s", diff)
	}
}

func TestParseErrorFields(t *testing.T) {
	t.Parallel()
	_, err := spec.Parse("dir/ci.yml", []byte("jobs:\n  a:\n    step: [x]\n"))
	var list spec.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse error is %T, want spec.ErrorList", err)
	}
	want := spec.ErrorList{
		{File: "dir/ci.yml", Line: 2, Col: 3, Msg: `job "a": no steps: add "steps" with at least one {run: ...}`},
		{File: "dir/ci.yml", Line: 3, Col: 5, Msg: `job "a": unknown key "step"; did you mean "steps"?`},
	}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("Parse errors mismatch (-want +got):\n%s", diff)
	}
	// Each error stands alone too, as errors.As finds it.
	var one *spec.Error
	if !errors.As(list[0], &one) || one.Error() != `dir/ci.yml:2:3: job "a": no steps: add "steps" with at least one {run: ...}` {
		t.Errorf("list[0].Error() = %q", list[0].Error())
	}
}

func TestParseFileSize(t *testing.T) {
	t.Parallel()
	valid := "jobs: {a: {steps: [x]}}\n"
	pad := func(n int) []byte {
		b := []byte(valid)
		for len(b) < n-1 {
			b = append(b, '#')
		}
		return append(b, '\n')
	}
	if _, err := spec.Parse("p.yml", pad(spec.MaxFileSize)); err != nil {
		t.Errorf("Parse(%d bytes) = %v, want no error", spec.MaxFileSize, err)
	}
	p, err := spec.Parse("p.yml", pad(spec.MaxFileSize+1))
	if p != nil || err == nil {
		t.Fatalf("Parse(%d bytes) = %v, %v; want nil and an error", spec.MaxFileSize+1, p, err)
	}
	want := []string{fmt.Sprintf("p.yml:1:1: file is %d bytes; a pipeline file may be at most %d", spec.MaxFileSize+1, spec.MaxFileSize)}
	if diff := cmp.Diff(want, errLines(t, err)); diff != "" {
		t.Errorf("Parse(%d bytes) errors mismatch (-want +got):\n%s", spec.MaxFileSize+1, diff)
	}
}

// parseWithin runs Parse and fails the test if it takes longer than limit,
// which is generous: these inputs take milliseconds, even under -race.
func parseWithin(t *testing.T, limit time.Duration, src []byte) (*spec.Pipeline, error) {
	t.Helper()
	type result struct {
		p   *spec.Pipeline
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		p, err := spec.Parse("p.yml", src)
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		t.Logf("Parse(%d bytes) took %v", len(src), time.Since(start))
		return r.p, r.err
	case <-time.After(limit):
		t.Fatalf("Parse(%d bytes) still running after %v", len(src), limit)
		return nil, nil
	}
}

const tooLarge = "p.yml:1:1: document too large once its aliases are expanded (more than 200000 nodes)"

// TestParseAliasBomb feeds a "billion laughs": a few kilobytes that expand
// to billions of nodes if every alias is followed.
func TestParseAliasBomb(t *testing.T) {
	t.Parallel()
	t.Run("nested lists", func(t *testing.T) {
		t.Parallel()
		// The classic: each level is nine aliases of the level before.
		var b strings.Builder
		b.WriteString("env: &l0 {A: lol, B: lol, C: lol, D: lol, E: lol, F: lol, G: lol, H: lol, I: lol}\n")
		b.WriteString("jobs:\n  a:\n    steps:\n      - run: x\n        env: &l1\n")
		for i := range 9 {
			fmt.Fprintf(&b, "          K%d: *l0\n", i)
		}
		for level := 2; level <= 9; level++ {
			fmt.Fprintf(&b, "  j%d:\n    runs-on: &l%d [", level, level)
			for i := range 9 {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "*l%d", level-1)
			}
			b.WriteString("]\n    steps: [x]\n")
		}
		b.WriteString("  bomb:\n    matrix: {os: *l9}\n    steps: *l9\n")
		p, err := parseWithin(t, 30*time.Second, []byte(b.String()))
		if p != nil || err == nil {
			t.Fatalf("Parse(alias bomb) = %v, %v; want nil and an error", p, err)
		}
	})
	t.Run("walked mappings", func(t *testing.T) {
		t.Parallel()
		// Here every alias lands where the parser walks: 1000 jobs, each
		// of 1000 steps, each with 1000 variables.
		const n = 1000
		var b strings.Builder
		b.WriteString("env: &env\n")
		for i := range n {
			fmt.Fprintf(&b, "  V%d: x\n", i)
		}
		b.WriteString("jobs:\n  j0: &job\n    steps: &steps\n      - &step {run: x, env: *env}\n")
		for range n - 1 {
			b.WriteString("      - *step\n")
		}
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "  j%d: *job\n", i)
		}
		p, err := parseWithin(t, 30*time.Second, []byte(b.String()))
		if p != nil || err == nil {
			t.Fatalf("Parse(alias bomb) = %v, %v; want nil and an error", p, err)
		}
		// Only the one error: what a cut-short walk found besides is noise.
		if diff := cmp.Diff([]string{tooLarge}, errLines(t, err)); diff != "" {
			t.Errorf("Parse(alias bomb) errors mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("self-referencing alias", func(t *testing.T) {
		t.Parallel()
		src := "jobs: &j\n  a: {steps: [x]}\n  b: *j\n"
		p, err := parseWithin(t, 30*time.Second, []byte(src))
		if p != nil || err == nil {
			t.Fatalf("Parse(%q) = %v, %v; want nil and an error", src, p, err)
		}
	})
}

// TestParseLargeFilesStayFast feeds files near MaxFileSize whose errors
// once cost time quadratic in their number.
func TestParseLargeFilesStayFast(t *testing.T) {
	t.Parallel()
	// gen is header, then line(0), line(1), ... up to nearly MaxFileSize.
	gen := func(header string, line func(i int) string) []byte {
		var b strings.Builder
		b.WriteString(header)
		for i := 0; ; i++ {
			l := line(i)
			if b.Len()+len(l) > spec.MaxFileSize-64 {
				break
			}
			b.WriteString(l)
		}
		return []byte(b.String())
	}
	tests := []struct {
		name string
		src  []byte
	}{
		{
			name: "an error on every line",
			src:  gen("jobs: {a: {steps: [", func(int) string { return `"",` }),
		},
		{
			name: "every job needs a missing job",
			src: gen("jobs:\n", func(i int) string {
				return fmt.Sprintf("  j%d: {needs: m%d, steps: [x]}\n", i, i)
			}),
		},
		{
			// Each environment's promotions lead, the long way, into a cycle.
			name: "a long promote-from chain into a cycle",
			src: gen("environments:\n  e0: {promote-from: e1, steps: [x]}\n  e1: {promote-from: e0, steps: [x]}\n  f0: {promote-from: e0, steps: [x]}\n",
				func(i int) string { return fmt.Sprintf("  f%d: {promote-from: f%d, steps: [x]}\n", i+1, i) }),
		},
		{
			name: "many unknown keys",
			src: gen("jobs:\n  a:\n    steps: [x]\n", func(i int) string {
				return fmt.Sprintf("    stepz%d: 1\n", i)
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := parseWithin(t, 60*time.Second, tt.src)
			if p != nil || err == nil {
				t.Fatalf("Parse(%s) = %v, %v; want nil and errors", tt.name, p, err)
			}
		})
	}
}

func TestParseIsDeterministic(t *testing.T) {
	t.Parallel()
	// Map iteration once ordered errors at one position at random.
	src := `jobs:
  a:
    matrix:
      go: [1, 2]
      exclude: [{zz: 1, os: x, goo: 2, arch: y, cpu: z}]
    steps: [x]
`
	_, first := spec.Parse("p.yml", []byte(src))
	if first == nil {
		t.Fatal("Parse = nil error, want errors")
	}
	for range 20 {
		if _, err := spec.Parse("p.yml", []byte(src)); err == nil || err.Error() != first.Error() {
			t.Fatalf("Parse = %v, want the same errors every time: %v", err, first)
		}
	}
}

func TestStepDisplayName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 70)
	tests := []struct {
		step *spec.Step
		want string
	}{
		{&spec.Step{Name: "unit tests", Run: "go test ./..."}, "unit tests"},
		{&spec.Step{Run: "go test ./..."}, "go test ./..."},
		{&spec.Step{Run: "make deps\nmake test\n"}, "make deps"},
		{&spec.Step{Run: long}, strings.Repeat("x", 59) + "…"},
		{&spec.Step{Run: strings.Repeat("x", 60)}, strings.Repeat("x", 60)},
		// Cut at a character boundary, not inside "é".
		{&spec.Step{Run: strings.Repeat("x", 58) + "éééé"}, strings.Repeat("x", 58) + "…"},
	}
	for _, tt := range tests {
		if got := tt.step.DisplayName(); got != tt.want {
			t.Errorf("(&Step{Name: %q, Run: %q}).DisplayName() = %q, want %q", tt.step.Name, tt.step.Run, got, tt.want)
		}
	}
}
