package main

// End-to-end tests of remote agents: the real server, real `gantry agent`
// processes talking to it over HTTP, and real faults (kill -9, a revoked
// token, a cancel).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/agent"
	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/backend/docker/dockertest"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
)

type testAgent struct {
	t      testing.TB
	name   string
	work   string
	cmd    *exec.Cmd
	stderr *lockedWriter
	done   chan struct{}
	code   int
}

// agentToken creates an agent token on s and returns its secret.
func (s *testServer) agentToken(name string, extra ...string) string {
	s.t.Helper()
	out, errOut, code := s.cli(append([]string{"agent-token", "create", name, "--output", "json"}, extra...)...)
	if code != 0 {
		s.t.Fatalf("agent-token create: %s", errOut)
	}
	var tok api.AgentToken
	if err := json.Unmarshal([]byte(out), &tok); err != nil || !strings.HasPrefix(tok.Token, "gantry_agent_") {
		s.t.Fatalf("agent-token create printed %q (%v), want a token", out, err)
	}
	return tok.Token
}

// startAgent starts `gantry agent` against s with its work dir in work.
func (s *testServer) startAgent(name, token, work string, extra ...string) *testAgent {
	s.t.Helper()
	return s.startAgentBin("gantry", name, token, work, extra...)
}

// startAgentBin is startAgent with the gantry binary at bin.
func (s *testServer) startAgentBin(bin, name, token, work string, extra ...string) *testAgent {
	s.t.Helper()
	a := &testAgent{t: s.t, name: name, work: work, stderr: &lockedWriter{w: &bytes.Buffer{}}, done: make(chan struct{})}
	args := append([]string{"agent", "--server", s.url, "--token", token, "--name", name, "--work", work,
		"--capacity", "1", "--kill-grace", "2s"}, extra...)
	a.cmd = exec.Command(bin, args...)
	a.cmd.Stdout, a.cmd.Stderr = io.Discard, a.stderr
	if err := a.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		a.cmd.Wait()
		a.code = a.cmd.ProcessState.ExitCode()
		close(a.done)
	}()
	// GANTRY_TEST_AGENT_LOGS=1 shows every agent's log, not only a failed
	// test's.
	s.t.Cleanup(func() {
		a.stop(syscall.SIGTERM)
		if s.t.Failed() || os.Getenv("GANTRY_TEST_AGENT_LOGS") != "" {
			s.t.Logf("agent %s log:\n%s", name, a.stderr)
		}
	})
	return a
}

func (a *testAgent) stop(sig syscall.Signal) {
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
		a.t.Errorf("agent %s did not stop within 20s of %v\n%s", a.name, sig, a.stderr)
	}
}

// waitFor polls cond until it holds, or fails the test with what.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until a line of build id contains want.
func (s *testServer) waitLog(id int64, want string) {
	s.t.Helper()
	waitFor(s.t, 20*time.Second, fmt.Sprintf("build %d has no log line containing %q\nserver log:\n%s", id, want, s.stderr), func() bool {
		lines, _ := s.client().Logs(context.Background(), id, "")
		for _, l := range lines {
			if strings.Contains(l.Line, want) {
				return true
			}
		}
		return false
	})
}

// alive reports whether the process whose PID a step wrote to path runs.
func alive(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("step wrote no PID: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("PID file %s: %v", path, err)
	}
	return syscall.Kill(pid, 0) == nil
}

// The job sleeps on an agent whose work dir has a file "slow" beside it,
// and passes at once on any other: killing the slow agent mid-job shows
// the job handed to the other.
const failoverPipeline = `
jobs:
  deploy:
    steps:
      - run: |
          agent=$(basename "$(dirname "$GANTRY_AGENT_WORKDIR")")
          echo "attempt on $agent"
          if [ -e "$GANTRY_AGENT_WORKDIR/../slow" ]; then
            echo $$ > "$GANTRY_AGENT_WORKDIR/../step.pid"
            sleep 60
          fi
          echo "finished on $agent"
`

func TestAgentKilledMidJob(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": failoverPipeline})
	s := startServer(t, t.TempDir(), "--agents", "0", "--lease-ttl", "2s")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID

	// No agent yet: the queue says so.
	waitFor(t, 10*time.Second, "gantry queue does not say that no agent is online", func() bool {
		out, _, _ := s.cli("queue")
		return strings.Contains(out, "deploy") && strings.Contains(out, "waiting: no agent is online")
	})

	token := s.agentToken("ci")
	root := t.TempDir()
	slowWork := filepath.Join(root, "slow-agent")
	os.MkdirAll(slowWork, 0o700)
	os.WriteFile(filepath.Join(root, "slow-agent", "slow"), nil, 0o600)
	slow := s.startAgent("slow", token, slowWork)
	s.waitLog(id, "attempt on slow-agent")

	out, _, _ := s.cli("agents")
	if !strings.Contains(out, "slow") || !strings.Contains(out, "busy") || !strings.Contains(out, fmt.Sprintf("#%d deploy", id)) {
		t.Errorf("gantry agents does not show the slow agent busy with the job:\n%s", out)
	}

	slow.stop(syscall.SIGKILL)
	s.startAgent("fast", token, filepath.Join(root, "fast-agent"))
	b := s.waitBuild(id, 30*time.Second)
	if b.Status != "success" || b.Jobs[0].Attempt != 2 || b.Jobs[0].Agent != "fast" {
		t.Errorf("build = %s, job attempt %d on %q; want success on attempt 2 on fast\nserver log:\n%s", b.Status, b.Jobs[0].Attempt, b.Jobs[0].Agent, s.stderr)
	}
	lines, err := s.client().Logs(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Line)
	}
	if !strings.Contains(strings.Join(got, "\n"), "finished on fast-agent") {
		t.Errorf("logs = %q, want the second attempt's lines", got)
	}

	// The killed agent's step outlived it; the next agent on the same
	// work dir stops it before it takes work.
	pidFile := filepath.Join(root, "slow-agent", "step.pid")
	if !alive(t, pidFile) {
		t.Fatalf("the killed agent's step is gone already; the test proves nothing")
	}
	s.startAgent("slow", token, slowWork)
	waitFor(t, 10*time.Second, "the restarted agent did not stop its predecessor's step", func() bool { return !alive(t, pidFile) })
	waitFor(t, 10*time.Second, "gantry agents does not list both agents idle", func() bool {
		out, _, _ := s.cli("agents")
		return strings.Count(out, "idle") == 2
	})
}

func TestAgentTokenRevokedMidJob(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": failoverPipeline})
	s := startServer(t, t.TempDir(), "--agents", "0")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "slow-agent"), 0o700)
	os.WriteFile(filepath.Join(root, "slow-agent", "slow"), nil, 0o600)
	doomed := s.startAgent("doomed", s.agentToken("doomed"), filepath.Join(root, "slow-agent"))
	s.waitLog(id, "attempt on slow-agent")

	out, errOut, code := s.cli("agent-token", "list", "--output", "json")
	var toks []api.AgentToken
	if code != 0 || json.Unmarshal([]byte(out), &toks) != nil || len(toks) != 1 || toks[0].Name != "doomed" || toks[0].Token != "" {
		t.Fatalf("agent-token list = %s %s; want the one token, without its secret", out, errOut)
	}
	if _, errOut, code := s.cli("agent-token", "revoke", fmt.Sprint(toks[0].ID)); code != 0 {
		t.Fatalf("agent-token revoke: %s", errOut)
	}
	// The revoked agent's job is taken from it at once, its step stopped,
	// and the agent ends saying why.
	select {
	case <-doomed.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the agent of a revoked token still runs\n%s", doomed.stderr)
	}
	if doomed.code != 1 || !strings.Contains(doomed.stderr.String(), "refused this agent's token") {
		t.Errorf("revoked agent exited %d with:\n%s\nwant 1 and a message that the token was refused", doomed.code, doomed.stderr)
	}
	if pidFile := filepath.Join(root, "slow-agent", "step.pid"); alive(t, pidFile) {
		t.Errorf("the revoked agent left its step running")
	}
	b, _ := s.client().Build(context.Background(), id)
	if b.Jobs[0].Status != "queued" || !strings.Contains(b.Jobs[0].Reason, `agent token "doomed" was revoked`) {
		t.Errorf("job after the revoke = %s %q; want queued again, saying the token was revoked", b.Jobs[0].Status, b.Jobs[0].Reason)
	}

	// The revoked token is refused for good; another agent finishes the job.
	if _, err := (&api.Client{Server: s.url, Token: testToken}).Agents(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.startAgent("other", s.agentToken("other"), filepath.Join(root, "other-agent"))
	if b := s.waitBuild(id, 30*time.Second); b.Status != "success" || b.Jobs[0].Agent != "other" {
		t.Errorf("build = %s on %q, want success on other", b.Status, b.Jobs[0].Agent)
	}
}

func TestAgentCancelReachesStep(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": `
jobs:
  long:
    steps:
      - run: |
          trap 'date +%s%N > "$GANTRY_AGENT_WORKDIR/../t"; mv "$GANTRY_AGENT_WORKDIR/../t" "$GANTRY_AGENT_WORKDIR/../stopped"; exit 1' TERM
          echo started
          sleep 60 & wait
`})
	s := startServer(t, t.TempDir(), "--agents", "0")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	root := t.TempDir()
	work := filepath.Join(root, "a")
	s.startAgent("a", s.agentToken("ci"), work, "--labels", "linux,special")
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	s.waitLog(id, "started")

	cancelled := time.Now()
	if _, errOut, code := s.cli("cancel", fmt.Sprint(id)); code != 0 {
		t.Fatalf("cancel: %s", errOut)
	}
	stopped := filepath.Join(work, "stopped")
	waitFor(t, 10*time.Second, "the step never got SIGTERM", func() bool {
		_, err := os.Stat(stopped)
		return err == nil
	})
	data, _ := os.ReadFile(stopped)
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	took := time.Unix(0, ns).Sub(cancelled)
	t.Logf("cancel reached the step %v after the request", took)
	// The issue asks for 1 s; the margin keeps a loaded CI machine green.
	if took > 2*time.Second {
		t.Errorf("cancel reached the step %v after the request, want about a second at most", took)
	}
	if b := s.waitBuild(id, 10*time.Second); b.Status != "cancelled" {
		t.Errorf("build = %s, want cancelled", b.Status)
	}
}

func TestLocksTakeTurns(t *testing.T) {
	t.Parallel()
	gate := t.TempDir()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": fmt.Sprintf(`
jobs:
  deploy:
    locks: [staging]
    steps:
      - run: |
          echo "deploying $GANTRY_BRANCH"
          while [ ! -e %s/open-$GANTRY_BRANCH ]; do sleep 0.05; done
  migrate:
    locks: [database]
    steps: ["true"]
`, gate)})
	s := startServer(t, t.TempDir(), "--agents", "3")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	if out, errOut, code := s.cli("lock", "add", "staging", "--capacity", "1"); code != 0 || !strings.Contains(out, "added lock staging") {
		t.Fatalf("lock add = %d %s %s", code, out, errOut)
	}
	first := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	s.waitLog(first, "deploying main")
	second := s.send(pushDelivery(t, "github", "acme/app", "dev", sha, "d2", "k")).body.Builds[0].ID

	waitFor(t, 10*time.Second, "gantry queue does not say why each job waits", func() bool {
		out, _, _ := s.cli("queue")
		return strings.Contains(out, fmt.Sprintf("waiting for lock staging held by build %d", first)) &&
			strings.Contains(out, "waiting for lock database, which does not exist")
	})
	if out, _, _ := s.cli("lock", "list"); !strings.Contains(out, fmt.Sprintf("staging  1/1   #%d deploy", first)) {
		t.Errorf("gantry lock list does not show build %d holding staging:\n%s", first, out)
	}
	if _, errOut, code := s.cli("lock", "add", "database"); code != 0 {
		t.Fatal(errOut)
	}
	os.WriteFile(filepath.Join(gate, "open-main"), nil, 0o600)
	if b := s.waitBuild(first, 20*time.Second); b.Status != "success" {
		t.Fatalf("first build = %s, want success", b.Status)
	}
	s.waitLog(second, "deploying dev")
	os.WriteFile(filepath.Join(gate, "open-dev"), nil, 0o600)
	if b := s.waitBuild(second, 20*time.Second); b.Status != "success" {
		t.Errorf("second build = %s, want success", b.Status)
	}
	_, errOut, code := s.cli("lock", "add", "bad name")
	if code != 1 || !strings.Contains(errOut, `lock name "bad name"`) {
		t.Errorf("lock add with a space = %d %q, want 1 and a message naming the lock", code, errOut)
	}
}

// cutProxy forwards TCP connections to a server until it is cut: then it
// drops every connection and refuses new ones, as a network partition
// between an agent and the server would.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// An agent cut off for less than its lease goes on, and its logs arrive
// complete once the network is back.
func TestAgentShortNetworkCut(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": `
jobs:
  count:
    steps:
      - run: for i in $(seq 1 40); do echo "line $i"; sleep 0.1; done
`})
	s := startServer(t, t.TempDir(), "--agents", "0", "--lease-ttl", "8s")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	p := newCutProxy(t, s.addr)
	s.startAgent("remote", s.agentToken("ci"), t.TempDir(), "--server", p.url())
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	s.waitLog(id, "line 5")
	p.setCut(true)
	time.Sleep(2 * time.Second)
	p.setCut(false)
	b := s.waitBuild(id, 30*time.Second)
	if b.Status != "success" || b.Jobs[0].Attempt != 1 {
		t.Errorf("build = %s on attempt %d, want success on the first attempt\nserver log:\n%s", b.Status, b.Jobs[0].Attempt, s.stderr)
	}
	lines, err := s.client().Logs(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Line)
	}
	var want []string
	for i := 1; i <= 40; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logs after a short cut = %q, want lines 1 to 40 in order", got)
	}
}

// An agent cut off for longer than its lease loses the job: another agent
// runs it, and the late agent's writes are refused once it is back.
func TestAgentLongNetworkCut(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": `
jobs:
  deploy:
    steps:
      - run: |
          agent=$(basename "$(dirname "$GANTRY_AGENT_WORKDIR")")
          echo "attempt on $agent"
          if [ -e "$GANTRY_AGENT_WORKDIR/../slow" ]; then
            echo $$ > "$GANTRY_AGENT_WORKDIR/../step.pid"
            sleep 3
            echo "late line from $agent"
            sleep 60
          fi
          echo "finished on $agent"
`})
	s := startServer(t, t.TempDir(), "--agents", "0", "--lease-ttl", "2s")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	token := s.agentToken("ci")
	root := t.TempDir()
	cutWork := filepath.Join(root, "cut-agent")
	os.MkdirAll(cutWork, 0o700)
	os.WriteFile(filepath.Join(cutWork, "slow"), nil, 0o600)
	p := newCutProxy(t, s.addr)
	s.startAgent("cut", token, cutWork, "--server", p.url())
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	s.waitLog(id, "attempt on cut-agent")

	p.setCut(true)
	s.startAgent("other", token, filepath.Join(root, "other-agent"))
	b := s.waitBuild(id, 30*time.Second)
	if b.Status != "success" || b.Jobs[0].Agent != "other" || b.Jobs[0].Attempt != 2 {
		t.Errorf("build = %s, job on %q attempt %d; want success on other, attempt 2", b.Status, b.Jobs[0].Agent, b.Jobs[0].Attempt)
	}
	p.setCut(false)
	// Back on the network, the cut agent learns it lost the job and stops
	// its step; nothing it sends is stored.
	pidFile := filepath.Join(cutWork, "step.pid")
	waitFor(t, 15*time.Second, "the cut agent's step still runs after the network came back", func() bool { return !alive(t, pidFile) })
	lines, _ := s.client().Logs(context.Background(), id, "")
	for _, l := range lines {
		if strings.Contains(l.Line, "late line") {
			t.Errorf("a line of the agent that lost its lease was stored: %q", l.Line)
		}
	}
}

// An agent on a machine with a Docker Engine says so with its docker label
// and runs jobs with an image in containers, leaving nothing behind.
func TestAgentRunsJobsInContainers(t *testing.T) {
	t.Parallel()
	image := dockertest.BuildImage(t)
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": fmt.Sprintf(`
jobs:
  inside:
    runs-on: [docker]
    image: %s
    pull: never
    steps:
      - run: |
          echo "in a container: $(cat /proc/1/cmdline | tr '\0' ' ')"
          test ! -e /usr/bin/git && echo "no host tools here"
`, image)})
	s := startServer(t, t.TempDir(), "--agents", "0")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	work := t.TempDir()
	s.startAgent("boxed", s.agentToken("ci"), work)
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	b := s.waitBuild(id, 60*time.Second)
	if b.Status != "success" {
		t.Fatalf("build = %s (%s), want success\nserver log:\n%s", b.Status, b.Jobs[0].Reason, s.stderr)
	}
	s.waitLog(id, "no host tools here")
	out, _, _ := s.cli("agents", "--output", "json")
	var agents []api.Agent
	if err := json.Unmarshal([]byte(out), &agents); err != nil || len(agents) != 1 || !slices.Contains(agents[0].Labels, "docker") {
		t.Errorf("gantry agents = %s (%v), want the agent with its docker label", out, err)
	}
	waitFor(t, 10*time.Second, "the agent left containers or networks behind", func() bool {
		// This agent's own: another test run may share the engine.
		left, err := dockertest.Leftovers(agent.DockerOwner("boxed", work))
		return err == nil && len(left) == 0
	})
}

// Two servers over one PostgreSQL: a job queued through one wakes an agent
// waiting on the other at once, and when the agent's server is killed the
// agent moves to the other and its running job goes on, losing nothing.
func TestAgentSurvivesServerKill(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	gate := t.TempDir()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": fmt.Sprintf(`
jobs:
  long:
    steps:
      - run: |
          i=0
          while [ ! -e %s/open ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done
          echo "done after $i ticks"
`, gate)})
	a := startServer(t, t.TempDir(), "--database", db, "--agents", "0", "--lease-ttl", "10s")
	b := startServer(t, t.TempDir(), "--database", db, "--agents", "0", "--lease-ttl", "10s")
	if _, errOut, code := a.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	token := a.agentToken("ci")
	agent := a.startAgent("roamer", token, t.TempDir(), "--server", a.url+","+b.url)
	waitFor(t, 10*time.Second, "the agent never asked server a for work", func() bool {
		out, _, _ := a.cli("agents")
		return strings.Contains(out, "roamer")
	})

	queued := time.Now()
	id := b.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	// Without a wake from server b, the agent's long poll on server a
	// would hold it for 25 s.
	waitFor(t, 15*time.Second, "a job queued through server b did not reach the agent waiting on server a: servers do not wake each other", func() bool {
		bd, err := b.client().Build(context.Background(), id)
		return err == nil && bd.Jobs[0].Agent == "roamer"
	})
	t.Logf("a job queued through server b was leased by the agent waiting on server a after %v", time.Since(queued))
	b.waitLog(id, "tick 1")

	a.stop(syscall.SIGKILL)
	b.waitLog(id, "tick 30")
	os.WriteFile(filepath.Join(gate, "open"), nil, 0o600)
	bd := b.waitBuild(id, 30*time.Second)
	if bd.Status != "success" || bd.Jobs[0].Attempt != 1 {
		t.Fatalf("build = %s on attempt %d, want success on the first: the job should go on\nagent log:\n%s", bd.Status, bd.Jobs[0].Attempt, agent.stderr)
	}
	lines, err := b.client().Logs(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	n := len(lines) - 1
	if n < 30 || lines[n].Line != fmt.Sprintf("done after %d ticks", n) {
		t.Fatalf("last line = %q after %d lines, want \"done after %d ticks\"", lines[n].Line, n+1, n)
	}
	for i := 0; i < n; i++ {
		if want := fmt.Sprintf("tick %d", i+1); lines[i].Line != want {
			t.Fatalf("line %d = %q, want %q: a line was lost or doubled", i+1, lines[i].Line, want)
		}
	}
}

// SIGTERM drains an agent: it says so, takes no new job and finishes the
// running one; a second SIGTERM stops the running job.
func TestAgentDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	gate := t.TempDir()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": fmt.Sprintf(`
jobs:
  wait:
    steps:
      - run: |
          echo "waiting on $GANTRY_BRANCH"
          while [ ! -e %s/open-$GANTRY_BRANCH ]; do sleep 0.05; done
          echo "released"
`, gate)})
	s := startServer(t, t.TempDir(), "--agents", "0")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	token := s.agentToken("ci")
	a := s.startAgent("drainer", token, t.TempDir())
	first := s.send(pushDelivery(t, "github", "acme/app", "one", sha, "d1", "k")).body.Builds[0].ID
	s.waitLog(first, "waiting on one")
	a.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, "gantry agents does not show the agent draining", func() bool {
		out, _, _ := s.cli("agents")
		return strings.Contains(out, "draining")
	})
	second := s.send(pushDelivery(t, "github", "acme/app", "two", sha, "d2", "k")).body.Builds[0].ID
	os.WriteFile(filepath.Join(gate, "open-one"), nil, 0o600)
	if b := s.waitBuild(first, 20*time.Second); b.Status != "success" {
		t.Errorf("the draining agent's job = %s, want success", b.Status)
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not exit once its job finished")
	}
	if a.code != 0 {
		t.Errorf("drained agent exit code = %d, want 0\n%s", a.code, a.stderr)
	}
	if b, _ := s.client().Build(context.Background(), second); b.Status != "queued" {
		t.Errorf("build queued while the agent drained = %s, want still queued", b.Status)
	}

	// A second signal stops the running job.
	b2 := s.startAgent("stopper", token, t.TempDir())
	s.waitLog(second, "waiting on two")
	b2.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	b2.cmd.Process.Signal(syscall.SIGTERM)
	if b := s.waitBuild(second, 20*time.Second); b.Status != "cancelled" {
		t.Errorf("job stopped by a second SIGTERM = %s (%s), want cancelled", b.Status, b.Jobs[0].Reason)
	}
}

// concurrency: {repo: 1} lets one job of the repository run at a time,
// though agents have room for more, and the waiting job says why.
func TestConcurrencyLimits(t *testing.T) {
	t.Parallel()
	gate := t.TempDir()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": fmt.Sprintf(`
concurrency: {repo: 1}
jobs:
  first:
    steps: ["while [ ! -e %[1]s/first ]; do sleep 0.05; done"]
  second:
    steps: ["while [ ! -e %[1]s/second ]; do sleep 0.05; done"]
`, gate)})
	s := startServer(t, t.TempDir(), "--agents", "2")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	// Generous: the condition is met at once on an idle machine, and this
	// is no test of speed.
	waitFor(t, 30*time.Second, "the second job does not wait for the repository's limit", func() bool {
		b, err := s.client().Build(context.Background(), id)
		return err == nil && b.Jobs[0].Status == "running" && b.Jobs[1].Status == "queued" &&
			b.Jobs[1].Reason == fmt.Sprintf("waiting for lock repo:acme/app held by build %d", id)
	})
	if out, _, _ := s.cli("lock", "list"); !strings.Contains(out, "repo:acme/app  1/1") {
		t.Errorf("gantry lock list does not show the limit held:\n%s", out)
	}
	os.WriteFile(filepath.Join(gate, "first"), nil, 0o600)
	waitFor(t, 10*time.Second, "the second job did not start once the first finished", func() bool {
		b, err := s.client().Build(context.Background(), id)
		return err == nil && b.Jobs[0].Status == "success" && b.Jobs[1].Status == "running"
	})
	os.WriteFile(filepath.Join(gate, "second"), nil, 0o600)
	if b := s.waitBuild(id, 20*time.Second); b.Status != "success" {
		t.Errorf("build = %s, want success", b.Status)
	}

	bad := filepath.Join(t.TempDir(), ".gantry.yml")
	os.WriteFile(bad, []byte("concurrency: {repo: 0}\njobs: {a: {steps: [\"true\"]}}\n"), 0o600)
	_, errOut, code := s.cli("validate", bad)
	if code != 1 || !strings.Contains(errOut, "concurrency.repo: want a whole number from 1 to 10000") {
		t.Errorf("validate concurrency.repo 0 = %d %q, want 1 and where and what", code, errOut)
	}
}
