package main

// End-to-end tests of delivery through the real binary: a push builds an
// artifact, its release deploys to staging by itself, is promoted to
// production and rolled back; deployments take turns; a damaged artifact
// never reaches an environment; remote agents upload and place artifacts;
// old artifacts go, a release's stay.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
)

// deliveryPipeline builds dist/app, a program that names its commit, and
// deploys it: each environment's steps run the program and copy it and
// the release's name into out, where the test looks.
func deliveryPipeline(out string, extra string) string {
	return fmt.Sprintf(`
env: {OUT: %q}
%s
jobs:
  build:
    steps:
      - run: |
          mkdir -p dist/doc
          printf '#!/bin/sh\necho app built from %%s\n' "$GANTRY_COMMIT" > dist/app
          chmod 755 dist/app
          echo "notes of $GANTRY_COMMIT" > dist/doc/NOTES
    artifacts: [dist/*]
environments:
  staging:
    deploy: {branch: main}
    steps:
      - run: |
          ./dist/app > "$OUT/staging-ran"
          cp dist/app "$OUT/staging-app"
          echo "$GANTRY_ENVIRONMENT $GANTRY_RELEASE" > "$OUT/staging-release"
  production:
    promote-from: staging
    steps:
      - run: |
          cp dist/app "$OUT/production-app"
          echo "$GANTRY_ENVIRONMENT $GANTRY_RELEASE" > "$OUT/production-release"
  qa:
    steps:
      - run: echo "$GANTRY_RELEASE" > "$OUT/qa-release"
`, out, extra)
}

func appOf(commit string) string { return fmt.Sprintf("#!/bin/sh\necho app built from %s\n", commit) }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// cliJSON runs the CLI with --output json and decodes what it printed.
func cliJSON[T any](t *testing.T, s *testServer, args ...string) T {
	t.Helper()
	out, errOut, code := s.cli(append(args, "--output", "json")...)
	var v T
	if code != 0 {
		t.Fatalf("gantry %s = %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("gantry %s printed %q: %v", strings.Join(args, " "), out, err)
	}
	return v
}

func envsOf(t *testing.T, s *testServer, repo string) map[string]api.Environment {
	t.Helper()
	out := map[string]api.Environment{}
	for _, e := range cliJSON[[]api.Environment](t, s, "envs", repo) {
		out[e.Name] = e
	}
	return out
}

// pushLive pushes sha to acme/app's main branch as delivery, and waits
// until the build succeeded and staging runs its release; it returns the
// build and the release's version.
func pushLive(t *testing.T, s *testServer, sha, delivery string) (*api.Build, string) {
	t.Helper()
	b := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", sha, delivery, "k")).body.Builds[0].ID, 60*time.Second)
	if b.Status != "success" {
		t.Fatalf("build = %s, want success", b.Status)
	}
	version := fmt.Sprintf("main-%d", b.Number)
	waitLive(t, s, "acme/app", "staging", version)
	return b, version
}

// waitLive waits until release runs in env of repo.
func waitLive(t *testing.T, s *testServer, repo, env, release string) api.Environment {
	t.Helper()
	var e api.Environment
	waitFor(t, 60*time.Second, fmt.Sprintf("%s of %s does not run %s; envs: %+v\nserver log:\n%s", env, repo, release, &e, s.stderr), func() bool {
		envs, err := s.client().Environments(t.Context(), repo)
		if err != nil {
			return false
		}
		for _, x := range envs {
			if x.Name == env {
				e = x
			}
		}
		return e.Current != nil && e.Current.Release == release
	})
	return e
}

// logText is the log of a build, one line per line.
func logText(t *testing.T, s *testServer, id int64) string {
	t.Helper()
	lines, err := s.client().Logs(t.Context(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, l := range lines {
		fmt.Fprintf(&b, "[%s] %s\n", l.Job, l.Line)
	}
	return b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tagDelivery is a GitHub push of a tag.
func tagDelivery(t *testing.T, repo, tag, commit, id, secret string) delivery {
	t.Helper()
	d := pushDelivery(t, "github", repo, "main", commit, id, secret)
	var doc map[string]any
	json.Unmarshal(d.body, &doc)
	set(doc, "ref", "refs/tags/"+tag)
	d.body, _ = json.Marshal(doc)
	d.headers["X-Hub-Signature-256"] = "sha256=" + hmacHex(secret, d.body)
	return d
}

// TestDeliveryEndToEnd: push -> build -> release -> staging by itself ->
// promote to production (the very bytes) -> a second release -> rollback;
// what gantry envs, releases and artifacts say at each point.
func TestDeliveryEndToEnd(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	repoDir, first := makeRepo(t, map[string]string{".gantry.yml": deliveryPipeline(out, "")})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	pushed := time.Now()
	a := s.send(pushDelivery(t, "github", "acme/app", "main", first, "d1", "k"))
	if a.status != http.StatusCreated {
		t.Fatalf("push = %d %+v", a.status, a.body)
	}
	b1 := s.waitBuild(a.body.Builds[0].ID, 60*time.Second)
	if b1.Status != "success" {
		t.Fatalf("build = %s, want success", b1.Status)
	}
	v1 := fmt.Sprintf("main-%d", b1.Number)

	// The artifacts, listed and fetched, checked by their SHA-256.
	arts := cliJSON[[]api.Artifact](t, s, "artifacts", fmt.Sprint(b1.ID))
	if len(arts) != 2 || arts[0].Path != "dist/app" || arts[0].SHA256 != digest(appOf(first)) || arts[0].Mode != "0755" ||
		arts[0].Job != "build" || arts[1].Path != "dist/doc/NOTES" || arts[1].Mode != "0644" {
		t.Errorf("gantry artifacts = %+v, want dist/app (0755, the digest of its bytes) and dist/doc/NOTES", arts)
	}
	got := filepath.Join(t.TempDir(), "app")
	if _, errOut, code := s.cli("artifact", "get", fmt.Sprint(b1.ID), "dist/app", "-o", got); code != 0 {
		t.Fatalf("artifact get -o = %d: %s", code, errOut)
	}
	if info, err := os.Stat(got); err != nil || readFile(t, got) != appOf(first) || info.Mode().Perm() != 0o755 {
		t.Errorf("artifact get -o wrote %q (%v), want the app, executable", readFile(t, got), info.Mode())
	}
	if stdout, _, code := s.cli("artifact", "get", fmt.Sprint(b1.ID), "dist/doc/NOTES"); code != 0 || stdout != "notes of "+first+"\n" {
		t.Errorf("artifact get to stdout = %d %q", code, stdout)
	}
	if _, errOut, code := s.cli("artifact", "get", fmt.Sprint(b1.ID), "dist/nope"); code != 1 || !strings.Contains(errOut, `no artifact "dist/nope"`) {
		t.Errorf("artifact get of a missing path = %d %q, want 1 saying so", code, errOut)
	}

	// The release deploys to staging by itself; nothing goes to production.
	st := waitLive(t, s, "acme/app", "staging", v1)
	t.Logf("from the push to %s running on staging: %v", v1, time.Since(pushed).Round(time.Millisecond))
	if st.Current.Kind != "auto" || st.Current.RequestedBy != "" || st.Current.FinishedAt == nil || st.Active != nil {
		t.Errorf("staging = %+v, want %s by auto, finished, nothing active", st.Current, v1)
	}
	if readFile(t, filepath.Join(out, "staging-app")) != appOf(first) || readFile(t, filepath.Join(out, "staging-release")) != "staging "+v1+"\n" ||
		readFile(t, filepath.Join(out, "staging-ran")) != "app built from "+first+"\n" {
		t.Errorf("staging ran the wrong thing: app %q, release %q", readFile(t, filepath.Join(out, "staging-app")), readFile(t, filepath.Join(out, "staging-release")))
	}
	if log := logText(t, s, b1.ID); !strings.Contains(log, "gantry: uploaded artifact dist/app (") || !strings.Contains(log, digest(appOf(first))) {
		t.Errorf("the build's log does not say it uploaded dist/app with its digest:\n%s", log)
	}
	if log := logText(t, s, st.Current.BuildID); !strings.Contains(log, "gantry: placed artifact dist/app (") || !strings.Contains(log, "verified)") {
		t.Errorf("the deployment's log does not say it placed dist/app, verified:\n%s", log)
	}
	envs := envsOf(t, s, "acme/app")
	if envs["production"].Current != nil || envs["production"].Active != nil || len(envs) != 3 {
		t.Errorf("envs = %+v, want staging, production (nothing yet) and qa", envs)
	}
	rels := cliJSON[[]api.Release](t, s, "releases", "acme/app")
	if len(rels) != 1 || rels[0].Version != v1 || rels[0].Commit != first || rels[0].BuildID != b1.ID ||
		!slices.Equal(rels[0].Authors, []string{"Test <test@example.com>"}) || len(rels[0].Artifacts) != 2 ||
		rels[0].Artifacts[0].SHA256 != digest(appOf(first)) {
		t.Errorf("gantry releases = %+v, want %s of %s by Test with its two artifacts", rels, v1, first)
	}

	// Promote: production gets the very bytes tested on staging.
	stdout, errOut, code := s.cli("promote", "acme/app", "--from", "staging", "--to", "production", "--wait", "--reason", "CHG-7: weekly release")
	if code != 0 || !strings.Contains(stdout, v1+" to production, succeeded") {
		t.Fatalf("promote --wait = %d: %s%s\nserver log:\n%s", code, stdout, errOut, s.stderr)
	}
	prodApp := readFile(t, filepath.Join(out, "production-app"))
	if digest(prodApp) != arts[0].SHA256 || readFile(t, filepath.Join(out, "production-release")) != "production "+v1+"\n" {
		t.Errorf("production runs bytes with SHA-256 %s, want %s (the artifact's)", digest(prodApp), arts[0].SHA256)
	}
	rel := cliJSON[api.Release](t, s, "release", "acme/app", v1)
	var where []string
	for _, d := range rel.Deployments {
		where = append(where, d.Environment+":"+d.State+":"+d.Kind)
	}
	if !slices.Equal(where, []string{"production:succeeded:promote", "staging:succeeded:auto"}) || rel.Deployments[0].RequestedBy != "admin" {
		t.Errorf("gantry release %s deployments = %v (by %q), want production by admin's promote, staging by auto", v1, where, rel.Deployments[0].RequestedBy)
	}

	// A second commit: its release replaces the first on staging only.
	second := commit(t, repoDir, map[string]string{"README": "two"})
	b2 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", second, "d2", "k")).body.Builds[0].ID, 60*time.Second)
	v2 := fmt.Sprintf("main-%d", b2.Number)
	waitLive(t, s, "acme/app", "staging", v2)
	if readFile(t, filepath.Join(out, "staging-app")) != appOf(second) {
		t.Errorf("staging runs %q after the second release", readFile(t, filepath.Join(out, "staging-app")))
	}
	envs = envsOf(t, s, "acme/app")
	if envs["production"].Current == nil || envs["production"].Current.Release != v1 {
		t.Errorf("production = %+v, want %s still", envs["production"].Current, v1)
	}
	text, _, _ := s.cli("envs", "acme/app")
	for _, want := range []string{"staging", v2, "gantry (auto)", "production", v1, "admin (promote)"} {
		if !strings.Contains(text, want) {
			t.Errorf("gantry envs does not say %q:\n%s", want, text)
		}
	}

	// Rollback: staging goes back to the first release, with its bytes.
	stdout, errOut, code = s.cli("rollback", "acme/app", "staging", "--wait")
	if code != 0 || !strings.Contains(stdout, v1+" to staging, succeeded") {
		t.Fatalf("rollback --wait = %d: %s%s", code, stdout, errOut)
	}
	if readFile(t, filepath.Join(out, "staging-app")) != appOf(first) || readFile(t, filepath.Join(out, "staging-release")) != "staging "+v1+"\n" {
		t.Errorf("staging after rollback runs %q", readFile(t, filepath.Join(out, "staging-app")))
	}
	st = envsOf(t, s, "acme/app")["staging"]
	if st.Current == nil || st.Current.Release != v1 || st.Current.Kind != "rollback" || st.Current.RequestedBy != "admin" {
		t.Errorf("staging after rollback = %+v, want %s by admin's rollback", st.Current, v1)
	}
	// The audit log has both requests, with who asked and why.
	var acts []string
	own := map[string]bool{} // what Gantry did by itself
	for _, a := range cliJSON[[]api.AuditEntry](t, s, "audit", "--limit", "1000") {
		if a.Actor == "gantry" {
			own[a.Action+" "+a.Detail["environment"]+" "+a.Detail["release"]+" "+a.Detail["version"]] = true
			continue
		}
		if strings.HasPrefix(a.Action, "deployment.") {
			acts = append(acts, fmt.Sprintf("%s %s %s %s %s %q", a.Actor, a.Action, a.Detail["environment"], a.Detail["release"], a.Detail["repo"], a.Reason))
		}
	}
	for _, want := range []string{"release.create   " + v1, "deployment.auto staging " + v1 + " ", "deployment.start staging " + v1 + " ",
		"deployment.end staging " + v1 + " ", "deployment.start production " + v1 + " "} {
		if !own[want] {
			t.Errorf("the audit log has no %q of Gantry's own; it has %v", want, own)
		}
	}
	if want := []string{fmt.Sprintf("admin deployment.rollback staging %s acme/app %q", v1, ""),
		fmt.Sprintf("admin deployment.promote production %s acme/app %q", v1, "CHG-7: weekly release")}; !slices.Equal(acts, want) {
		t.Errorf("audit log of deployments = %q, want %q", acts, want)
	}
	if out, errOut, code := s.cli("audit", "verify"); code != 0 {
		t.Errorf("audit verify = %d: %s%s", code, out, errOut)
	}
	// Nothing further back to go to: refused, and nothing changes.
	if _, errOut, code := s.cli("rollback", "acme/app", "staging"); code != 1 || !strings.Contains(errOut, "no other release to go back to") {
		t.Errorf("second rollback = %d %q, want 1: nothing to go back to", code, errOut)
	}

	// A tag makes a release that goes nowhere by itself, and may not skip
	// staging on its way to production.
	gitCmd(t, repoDir, "tag", "v1.0.0", second)
	tb := s.waitBuild(s.send(tagDelivery(t, "acme/app", "v1.0.0", second, "d3", "k")).body.Builds[0].ID, 60*time.Second)
	if tb.Status != "success" {
		t.Fatalf("tag build = %s", tb.Status)
	}
	// The release is registered once the build has finished: a moment
	// after its status says so.
	waitFor(t, 10*time.Second, "the tag made no release", func() bool {
		_, _, code := s.cli("release", "acme/app", "v1.0.0")
		return code == 0
	})
	if r := cliJSON[api.Release](t, s, "release", "acme/app", "v1.0.0"); r.Tag != "v1.0.0" || r.Commit != second {
		t.Errorf("release v1.0.0 = %+v", r)
	}
	_, errOut, code = s.cli("deploy", "acme/app", "production", "--release", "v1.0.0")
	if code != 1 || !strings.Contains(errOut, "release v1.0.0 has not succeeded in staging, and production takes only releases that did") {
		t.Errorf("deploy of v1.0.0 to production = %d %q, want 1 and the rule", code, errOut)
	}
	if _, errOut, code := s.cli("deploy", "acme/app", "qa"); code != 2 || !strings.Contains(errOut, "--release is required") {
		t.Errorf("deploy without --release = %d %q, want 2", code, errOut)
	}
	if _, errOut, code := s.cli("deploy", "acme/app", "nowhere", "--release", v1); code != 1 || !strings.Contains(errOut, `no environment "nowhere"`) {
		t.Errorf("deploy to a missing environment = %d %q", code, errOut)
	}
	if _, errOut, code := s.cli("deploy", "acme/app", "qa", "--release", "main-999"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("deploy of a missing release = %d %q", code, errOut)
	}
	// A deployment's build is not retried: it is deployed again instead.
	if _, errOut, code := s.cli("retry", fmt.Sprint(st.Current.BuildID)); code != 1 || !strings.Contains(errOut, "it runs a deployment") {
		t.Errorf("retry of a deployment's build = %d %q", code, errOut)
	}
}

// TestDeploymentsTakeTurns: while a slow deployment runs, two more wait in
// order; none is cancelled by a newer one; each runs alone. (The builds of
// main take turns too, as pushes of a branch do, so the releases come in
// order; they do not wait for the deployments.)
func TestDeploymentsTakeTurns(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	slow := fmt.Sprintf(`
env: {OUT: %q}
jobs:
  build: {steps: ["mkdir -p dist && echo $GANTRY_BUILD_NUMBER > dist/n"], artifacts: [dist/n]}
environments:
  staging:
    deploy: {branch: main}
    steps:
      - run: |
          echo "start $GANTRY_RELEASE" >> "$OUT/log"
          sleep 8
          echo "end $GANTRY_RELEASE" >> "$OUT/log"
`, out)
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": slow})
	s := startServer(t, t.TempDir(), "--agents", "4")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	var versions []string
	for i := range 3 {
		b := s.send(pushDelivery(t, "github", "acme/app", "main", sha, fmt.Sprint("d", i), "k")).body.Builds[0]
		versions = append(versions, fmt.Sprintf("main-%d", b.Number))
	}
	// While the first deploys, the others wait, in order, saying why. (Its
	// 8 s leave the next two builds time to pass, also on a busy machine.)
	var st api.Environment
	waitFor(t, 30*time.Second, "staging never had one deployment running and two waiting", func() bool {
		st = envsOf(t, s, "acme/app")["staging"]
		return st.Active != nil && len(st.Waiting) == 2
	})
	if st.Active.Release != versions[0] || st.Waiting[0].Release != versions[1] || st.Waiting[1].Release != versions[2] {
		t.Errorf("staging = running %s, waiting %s, %s; want %v in order", st.Active.Release, st.Waiting[0].Release, st.Waiting[1].Release, versions)
	}
	if !strings.Contains(st.Waiting[0].Waiting, fmt.Sprintf("waiting for deployment %d (%s) to finish", st.Active.ID, versions[0])) ||
		!strings.Contains(st.Waiting[1].Waiting, "waiting behind deployment") {
		t.Errorf("why they wait: %q, %q", st.Waiting[0].Waiting, st.Waiting[1].Waiting)
	}
	text, _, _ := s.cli("envs", "acme/app")
	if !strings.Contains(text, "deploying "+versions[0]) || !strings.Contains(text, "waiting: "+versions[1]) {
		t.Errorf("gantry envs while deploying:\n%s", text)
	}
	waitLive(t, s, "acme/app", "staging", versions[2])
	var want []string
	for _, v := range versions {
		want = append(want, "start "+v, "end "+v)
	}
	if readFile(t, filepath.Join(out, "log")) != strings.Join(want, "\n")+"\n" {
		t.Errorf("deployments ran as:\n%s\nwant one at a time, in order:\n%s", readFile(t, filepath.Join(out, "log")), strings.Join(want, "\n"))
	}
	ds := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "staging")
	for _, d := range ds {
		if d.State != "succeeded" {
			t.Errorf("deployment %d of %s = %s (%s), want succeeded: none is cancelled by a newer one", d.ID, d.Release, d.State, d.Reason)
		}
	}
	if len(ds) != 3 {
		t.Errorf("deployments = %d, want 3", len(ds))
	}
}

// TestDamagedArtifactIsNotDeployed: an artifact whose bytes on the server
// no longer match their SHA-256 fails the deployment before its first
// step, saying which file; gantry artifact get refuses it too.
func TestDamagedArtifactIsNotDeployed(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": deliveryPipeline(out, "")})
	data := t.TempDir()
	s := startServer(t, data)
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	b := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	v := fmt.Sprintf("main-%d", b.Number)
	waitLive(t, s, "acme/app", "staging", v)

	sum := digest(appOf(sha))
	blob := filepath.Join(data, "artifacts", "sha256", sum[:2], sum)
	if err := os.WriteFile(blob, []byte("#!/bin/sh\necho something else\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, errOut, code := s.cli("deploy", "acme/app", "qa", "--release", v, "--wait")
	if code != 1 || !strings.Contains(stdout, "failed") {
		t.Fatalf("deploy of a damaged artifact = %d: %s%s, want 1 and failed", code, stdout, errOut)
	}
	ds := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "qa")
	if len(ds) != 1 || ds[0].State != "failed" || !strings.Contains(ds[0].Reason, "artifact dist/app") ||
		!strings.Contains(ds[0].Reason, "SHA-256") || !strings.Contains(ds[0].Reason, sum) {
		t.Errorf("qa deployment = %+v, want failed naming dist/app and its SHA-256", ds)
	}
	if _, err := os.Stat(filepath.Join(out, "qa-release")); !os.IsNotExist(err) {
		t.Errorf("a step of the deployment ran: %v", err)
	}
	if e := envsOf(t, s, "acme/app")["qa"]; e.Current != nil || e.Last == nil || e.Last.State != "failed" {
		t.Errorf("envs qa = %+v, want nothing live and the failure as last", e)
	}
	if log := logText(t, s, ds[0].BuildID); strings.Contains(log, "placed artifact dist/app") {
		t.Errorf("the deployment's log says the damaged file was placed:\n%s", log)
	}
	got := filepath.Join(t.TempDir(), "app")
	if _, errOut, code := s.cli("artifact", "get", fmt.Sprint(b.ID), "dist/app", "-o", got); code != 1 || !strings.Contains(errOut, "SHA-256") {
		t.Errorf("artifact get of damaged bytes = %d %q, want 1 naming the mismatch", code, errOut)
	}
	if _, err := os.Stat(got); !os.IsNotExist(err) {
		t.Errorf("artifact get -o wrote damaged bytes: %v", err)
	}
}

// TestRemoteAgentArtifacts: a remote agent uploads a job's artifacts, and
// another with the label the environment asks for places them.
func TestRemoteAgentArtifacts(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	pipeline := strings.Replace(deliveryPipeline(out, ""), "  build:\n", "  build:\n    runs-on: [builder]\n", 1)
	pipeline = strings.Replace(pipeline, "  staging:\n", "  staging:\n    runs-on: [deployer]\n", 1)
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": pipeline})
	s := startServer(t, t.TempDir(), "--agents", "0")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	token := s.agentToken("ci")
	s.startAgent("builder", token, t.TempDir(), "--labels", "builder")
	s.startAgent("deployer", token, t.TempDir(), "--labels", "deployer")
	b := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	if b.Status != "success" || b.Jobs[0].Agent != "builder" {
		t.Fatalf("build = %s on %s", b.Status, b.Jobs[0].Agent)
	}
	st := waitLive(t, s, "acme/app", "staging", fmt.Sprintf("main-%d", b.Number))
	db, err := s.client().Build(t.Context(), st.Current.BuildID)
	if err != nil || db.Jobs[0].Agent != "deployer" || db.Event != "deploy" {
		t.Errorf("deployment build = %+v, %v; want it run by the deployer", db, err)
	}
	if readFile(t, filepath.Join(out, "staging-app")) != appOf(sha) {
		t.Errorf("staging got %q", readFile(t, filepath.Join(out, "staging-app")))
	}
	if arts := cliJSON[[]api.Artifact](t, s, "artifacts", fmt.Sprint(b.ID)); len(arts) != 2 || arts[0].SHA256 != digest(appOf(sha)) {
		t.Errorf("artifacts uploaded by the remote agent = %+v", arts)
	}
}

// TestArtifactRetention: artifacts past the retention go, files and all;
// those a release refers to stay, and still deploy.
func TestArtifactRetention(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": deliveryPipeline(out, "")})
	data := t.TempDir()
	s := startServer(t, data, "--artifact-retention", "2s")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	released := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	waitLive(t, s, "acme/app", "staging", fmt.Sprintf("main-%d", released.Number))
	other := commit(t, repoDir, map[string]string{"README": "feature"})
	feature := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "feature", other, "d2", "k")).body.Builds[0].ID, 60*time.Second)
	if arts := cliJSON[[]api.Artifact](t, s, "artifacts", fmt.Sprint(feature.ID)); len(arts) != 2 {
		t.Fatalf("the feature build's artifacts = %+v, want 2 before they expire", arts)
	}
	sum := digest(appOf(other))
	waitFor(t, 30*time.Second, "the feature build's artifacts did not expire", func() bool {
		_, err := os.Stat(filepath.Join(data, "artifacts", "sha256", sum[:2], sum))
		return os.IsNotExist(err) && len(cliJSON[[]api.Artifact](t, s, "artifacts", fmt.Sprint(feature.ID))) == 0
	})
	if _, errOut, code := s.cli("artifact", "get", fmt.Sprint(feature.ID), "dist/app"); code != 1 || !strings.Contains(errOut, "no artifact") {
		t.Errorf("artifact get of an expired artifact = %d %q", code, errOut)
	}
	// The release's, older still, stay and deploy.
	if arts := cliJSON[[]api.Artifact](t, s, "artifacts", fmt.Sprint(released.ID)); len(arts) != 2 {
		t.Errorf("the released build's artifacts after expiry = %+v, want both", arts)
	}
	if stdout, _, code := s.cli("artifact", "get", fmt.Sprint(released.ID), "dist/app"); code != 0 || stdout != appOf(sha) {
		t.Errorf("artifact get of a released artifact = %d %q", code, stdout)
	}
	if stdout, errOut, code := s.cli("deploy", "acme/app", "qa", "--release", fmt.Sprintf("main-%d", released.Number), "--wait"); code != 0 {
		t.Errorf("deploy of the kept release = %d: %s%s", code, stdout, errOut)
	}
}

// TestDeliveryPostgres: the same way from a push to production, with the
// server's state in PostgreSQL.
func TestDeliveryPostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	out := t.TempDir()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": deliveryPipeline(out, "")})
	s := startServer(t, t.TempDir(), "--database", db)
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	b := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	v := fmt.Sprintf("main-%d", b.Number)
	waitLive(t, s, "acme/app", "staging", v)
	if stdout, errOut, code := s.cli("promote", "acme/app", "--from", "staging", "--to", "production", "--wait"); code != 0 {
		t.Fatalf("promote --wait = %d: %s%s", code, stdout, errOut)
	}
	if got := readFile(t, filepath.Join(out, "production-app")); digest(got) != digest(appOf(sha)) {
		t.Errorf("production runs %q, want the artifact's bytes", got)
	}
	if e := envsOf(t, s, "acme/app")["production"]; e.Current == nil || e.Current.Release != v || e.Current.Kind != "promote" {
		t.Errorf("production = %+v, want %s promoted", e.Current, v)
	}
}

// TestDeploymentSecrets: a deployment gets the secrets scoped to its
// environment over the unscoped ones of the same name, masked in its log.
func TestDeploymentSecrets(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	pipeline := strings.Replace(deliveryPipeline(out, ""), "  staging:\n", "  staging:\n    secrets: [DEPLOY_KEY]\n", 1)
	pipeline = strings.Replace(pipeline, `          ./dist/app > "$OUT/staging-ran"`,
		`          ./dist/app > "$OUT/staging-ran"`+"\n          echo \"key $DEPLOY_KEY\"\n          printf %s \"$DEPLOY_KEY\" > \"$OUT/staging-key\"", 1)
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": pipeline})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	for env, value := range map[string]string{"": "shared-deploy-key", "staging": "staging-deploy-key-42"} {
		args := []string{"secret", "set", "acme/app", "DEPLOY_KEY"}
		if env != "" {
			args = append(args, "--environment", env)
		}
		if _, errOut, code := s.cliIn(s.url, value, args...); code != 0 {
			t.Fatalf("secret set %v = %d: %s", args, code, errOut)
		}
	}
	b := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	st := waitLive(t, s, "acme/app", "staging", fmt.Sprintf("main-%d", b.Number))
	if got := readFile(t, filepath.Join(out, "staging-key")); got != "staging-deploy-key-42" {
		t.Errorf("the deployment got DEPLOY_KEY %q, want the one scoped to staging", got)
	}
	if log := logText(t, s, st.Current.BuildID); strings.Contains(log, "staging-deploy-key-42") || !strings.Contains(log, "key ***") {
		t.Errorf("the deployment's log does not mask the secret:\n%s", log)
	}
}

// Where releases go is the default branch's word: a branch whose own
// pipeline file says it feeds production makes no release, and nothing
// of it is deployed; the default branch's own releases still go where its
// file says.
func TestBranchCannotDeployItself(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	repoDir, first := makeRepo(t, map[string]string{".gantry.yml": deliveryPipeline(out, "")})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	b1 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", first, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	waitLive(t, s, "acme/app", "staging", fmt.Sprintf("main-%d", b1.Number))

	gitCmd(t, repoDir, "checkout", "-q", "-b", "evil")
	evil := commit(t, repoDir, map[string]string{".gantry.yml": fmt.Sprintf(`
jobs:
  build:
    steps: ["true"]
environments:
  production:
    deploy: {branch: evil}
    steps:
      - run: touch %q
`, filepath.Join(out, "evil-in-production"))})
	b2 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "evil", evil, "d2", "k")).body.Builds[0].ID, 60*time.Second)
	if b2.Status != "success" {
		t.Fatalf("the branch's build = %s, want success", b2.Status)
	}
	time.Sleep(time.Second) // a release would be registered by now
	for _, r := range cliJSON[[]api.Release](t, s, "releases", "acme/app") {
		if r.Branch == "evil" {
			t.Errorf("branch evil made release %s, though the default branch feeds no environment from it", r.Version)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "evil-in-production")); err == nil {
		t.Errorf("the branch's own pipeline deployed it to production")
	}
	if prod, ok := envsOf(t, s, "acme/app")["production"]; ok && (prod.Current != nil || prod.Active != nil) {
		t.Errorf("production = %+v, want nothing deployed", prod)
	}
}
