package main

// The -server mode: what `gantry server` promises, measured from outside
// the way a forge and a user see it.
//
//   - latency: a signed GitHub push webhook in, to the first step's process
//     running, with the repository's mirror warm; 1-step pipeline, built-in
//     agent, one delivery at a time. Two variants, interleaved round by
//     round with a floor baseline: a known commit (already in the mirror;
//     a new delivery ID, so a new build) and a new commit (committed to the
//     origin repository just before, untimed, so the server must fetch it).
//     Target: median at most 20 ms.
//   - throughput: N deliveries of the known commit as fast as the harness
//     can send them with bounded concurrency; builds per second from the
//     first send to the last build finished. Target: at least 20.
//   - memory: the server's VmRSS when idle (a registered repo, a few
//     finished builds, then a settle time), at most 40 MiB; its VmHWM (peak)
//     after the throughput run, reported.
//
// How "the first step started" is seen: the step is
//
//	printf '%s\n' "$GANTRY_BUILD_NUMBER" > FIFO
//
// and the harness holds FIFO open for reading (O_RDWR, so writers never
// block and never see EOF), stamping each line with its own clock the
// moment it reads it. The delay runs from just before the POST to that
// read, on one monotonic clock in one process: it includes the step
// shell's exec and start-up and the printf, so it is an upper bound of
// "the step process started" by about what the floor baseline shows
// (the harness exec-ing the same `sh -e -c` that writes the FIFO). The
// build API's step started_at is reported beside it: it is the server's
// clock (the same machine's CLOCK_REALTIME, compared to the harness's wall
// clock at the send) taken when the engine begins the step, before it
// reports the start and forks, so it is a lower bound.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

// Targets the server promises.
const (
	targetLatencyMS    = 20.0 // webhook to first step started, median
	targetBuildsPerSec = 20.0 // sustained, one-step builds, 2 cores, SQLite
	targetIdleMiB      = 40.0 // idle VmRSS
)

// serverConfig is what the -server mode measures with.
type serverConfig struct {
	rounds      int // measured latency rounds (known, new, floor each)
	warmup      int // unmeasured rounds before them
	builds      int // deliveries of the throughput run
	concurrency int // deliveries in flight at once in the throughput run
	agents      int // --agents of the server; 0: its default
	cpus        string
	settle      time.Duration // idle time before reading memory
	dataDir     string        // parent of the server's data directory; "": the temporary directory
	logLevel    string
	logPath     string // where the server's output goes; "": a temporary file
	samplesPath string // where to write every latency sample as CSV; "": nowhere
}

const (
	benchRepo   = "bench/app"
	benchSecret = "bench-webhook-secret"
	benchToken  = "gantry_bench_admin_token"
)

// serverHarness runs one `gantry server` and talks to it as a forge and as
// a user.
type serverHarness struct {
	bin     string
	sh      string
	origin  string // the forge's repository: a plain git repository
	data    string
	fifo    string
	logPath string
	url     string

	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File

	fifoFile *os.File
	lines    chan fifoLine

	hooks *http.Client
	api   *api.Client

	head, before string // origin's main and the commit before it
	delivery     int
	counter      int
}

// fifoLine is a line a step wrote to the FIFO, and when the harness read it.
type fifoLine struct {
	text string
	at   time.Time
}

// deliverySample is one measured webhook delivery. Durations are from just
// before the POST.
type deliverySample struct {
	answer time.Duration // the webhook's HTTP answer read
	fifo   time.Duration // the step's line read from the FIFO
	// From the build API, the server's clock against the harness's wall
	// clock at the send.
	created, jobStarted, stepStarted, finished time.Duration
}

// serverResults is everything the -server mode measured.
type serverResults struct {
	cfg            serverConfig
	known, fresh   []deliverySample
	floor          []time.Duration
	idleRSS        int64 // bytes
	idleHWM        int64
	tp             throughput
	afterRSS       int64 // settled after the throughput run
	peakHWM        int64
	cpusAllowed    string
	loadBefore     string // /proc/loadavg when the run began and ended:
	loadAfter      string // other work on the machine shows here
	fsType         string
	totalBuilds    int
	failedBuilds   int
	serverLogLines int
}

// throughput is the result of the sustained run.
type throughput struct {
	n, concurrency int
	// elapsed is from the first send to the last build's finished_at
	// (server clock); seen is to the harness seeing the last build
	// finished through the API, an upper bound.
	elapsed, seen  time.Duration
	sent           time.Duration // from the first send to the last answer
	lastStep       time.Duration // to the last step's FIFO line
	answers        []time.Duration
	statuses       map[int]int
	succeeded      int
	buildsPerSec   float64
	queueWaitP50ms float64
	// serverCPU is the CPU time of the server and the processes it waited
	// for (git, the steps) during the run; machineBusy the share of all
	// CPUs' time that was not idle, from /proc/stat.
	serverCPU   time.Duration
	machineBusy float64
}

// runServerBench starts the server in tmp and measures it.
func runServerBench(tmp, bin string, cfg serverConfig, progress func(string, ...any)) (*serverResults, error) {
	h, err := newServerHarness(tmp, bin, cfg)
	if err != nil {
		return nil, err
	}
	defer h.close()
	res := &serverResults{cfg: cfg, fsType: fsType(h.data), loadBefore: loadavg()}
	defer func() { res.loadAfter = loadavg() }()

	progress("starting gantry server (data in %s)", h.data)
	if err := h.start(cfg); err != nil {
		return nil, err
	}
	res.cpusAllowed = procStatus(h.cmd.Process.Pid)["Cpus_allowed_list"]
	if err := h.gantry("repo", "add", benchRepo, "--url", h.origin, "--webhook-secret", benchSecret, "--forge", "github"); err != nil {
		return nil, err
	}

	// Latency, one delivery at a time. Each round runs a known-commit
	// delivery, a new-commit delivery and the floor, in an order that
	// reverses every other round.
	trials := []string{"known", "new", "floor"}
	progress("%d warm-up rounds, then %d measured rounds of a known-commit delivery, a new-commit delivery and the floor", cfg.warmup, cfg.rounds)
	last := time.Now()
	for round := -cfg.warmup; round < cfg.rounds; round++ {
		order := slices.Clone(trials)
		if round%2 != 0 {
			slices.Reverse(order)
		}
		for _, t := range order {
			var s deliverySample
			var err error
			switch t {
			case "known":
				s, err = h.deliver(h.head, h.before)
			case "new":
				if err = h.newCommit(); err == nil {
					s, err = h.deliver(h.head, h.before)
				}
			case "floor":
				s.fifo, err = h.floor()
			}
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, t, err)
			}
			if round < 0 {
				continue
			}
			switch t {
			case "known":
				res.known = append(res.known, s)
			case "new":
				res.fresh = append(res.fresh, s)
			case "floor":
				res.floor = append(res.floor, s.fifo)
			}
		}
		if round == -1 {
			// A registered repo and a few finished builds: idle memory.
			time.Sleep(cfg.settle)
			st := procStatus(h.cmd.Process.Pid)
			res.idleRSS, res.idleHWM = kib(st["VmRSS"]), kib(st["VmHWM"])
			progress("idle after %s: VmRSS %.1f MiB", cfg.settle, mib(res.idleRSS))
		}
		if round >= 0 && (time.Since(last) > 2*time.Second || round == cfg.rounds-1) {
			progress("round %d/%d", round+1, cfg.rounds)
			last = time.Now()
		}
		// Let the agent go back to waiting for work before the next
		// delivery, as between two pushes.
		time.Sleep(10 * time.Millisecond)
	}

	if cfg.samplesPath != "" {
		if err := writeSamples(cfg.samplesPath, res); err != nil {
			return nil, err
		}
	}

	progress("throughput: %d deliveries, %d at a time", cfg.builds, cfg.concurrency)
	if res.tp, err = h.throughput(cfg.builds, cfg.concurrency); err != nil {
		return nil, err
	}
	progress("throughput: %.1f builds/s", res.tp.buildsPerSec)
	st := procStatus(h.cmd.Process.Pid)
	res.peakHWM = kib(st["VmHWM"])
	time.Sleep(cfg.settle)
	st = procStatus(h.cmd.Process.Pid)
	res.afterRSS = kib(st["VmRSS"])
	res.peakHWM = max(res.peakHWM, kib(st["VmHWM"]))

	// Every latency build was checked to succeed as it finished (deliver
	// fails otherwise); the throughput run counted its own.
	res.totalBuilds = 2*(cfg.warmup+cfg.rounds) + res.tp.n
	res.failedBuilds = res.tp.n - res.tp.succeeded
	if err := h.stop(); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(h.logPath); err == nil {
		res.serverLogLines = bytes.Count(b, []byte("\n"))
	}
	return res, nil
}

func newServerHarness(tmp, bin string, cfg serverConfig) (*serverHarness, error) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("git"); err != nil {
		return nil, err
	}
	h := &serverHarness{
		bin: bin, sh: sh,
		origin:  filepath.Join(tmp, "origin"),
		fifo:    filepath.Join(tmp, "started.fifo"),
		logPath: filepath.Join(tmp, "server.log"),
		lines:   make(chan fifoLine, 1<<16),
		exited:  make(chan struct{}),
	}
	if cfg.logPath != "" {
		if h.logPath, err = filepath.Abs(cfg.logPath); err != nil {
			return nil, err
		}
	}
	parent := tmp
	if cfg.dataDir != "" {
		parent = cfg.dataDir
	}
	if h.data, err = os.MkdirTemp(parent, "gantry-bench-data-"); err != nil {
		return nil, err
	}
	if err := syscall.Mkfifo(h.fifo, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo: %w", err)
	}
	// Read and write: steps' writes never block for want of a reader, and
	// the reader never sees end of file between them.
	if h.fifoFile, err = os.OpenFile(h.fifo, os.O_RDWR, 0); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(h.fifoFile)
		for sc.Scan() {
			at := time.Now()
			h.lines <- fifoLine{text: sc.Text(), at: at}
		}
	}()

	if err := os.Mkdir(h.origin, 0o755); err != nil {
		return nil, err
	}
	pipeline := fmt.Sprintf("jobs:\n  job:\n    steps:\n      - name: started\n        run: |\n          printf '%%s\\n' \"$GANTRY_BUILD_NUMBER\" > %s\n", shellQuote(h.fifo))
	if err := os.WriteFile(filepath.Join(h.origin, ".gantry.yml"), []byte(pipeline), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(h.origin, "counter.txt"), []byte("0\n"), 0o644); err != nil {
		return nil, err
	}
	if _, err := h.git("init", "-q", "-b", "main"); err != nil {
		return nil, err
	}
	if _, err := h.git("add", "."); err != nil {
		return nil, err
	}
	if _, err := h.git("commit", "-q", "-m", "pipeline"); err != nil {
		return nil, err
	}
	if h.head, err = h.git("rev-parse", "HEAD"); err != nil {
		return nil, err
	}
	h.before = strings.Repeat("0", 40)

	h.hooks = &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: max(cfg.concurrency, 2), DisableCompression: true},
	}
	return h, nil
}

func (h *serverHarness) git(args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = h.origin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", args[0], err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// newCommit pushes a new commit to the origin's main, as a developer would.
func (h *serverHarness) newCommit() error {
	h.counter++
	if err := os.WriteFile(filepath.Join(h.origin, "counter.txt"), []byte(strconv.Itoa(h.counter)+"\n"), 0o644); err != nil {
		return err
	}
	if _, err := h.git("commit", "-q", "-a", "-m", "change "+strconv.Itoa(h.counter)); err != nil {
		return err
	}
	head, err := h.git("rev-parse", "HEAD")
	if err != nil {
		return err
	}
	h.before, h.head = h.head, head
	return nil
}

// start starts the server and waits until it answers /healthz.
func (h *serverHarness) start(cfg serverConfig) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	h.url = "http://" + addr
	args := []string{h.bin, "server", "--addr", addr, "--data", h.data, "--log-level", cfg.logLevel}
	if cfg.agents > 0 {
		args = append(args, "--agents", strconv.Itoa(cfg.agents))
	}
	if cfg.cpus != "" {
		// taskset execs the server: the PID stays the server's.
		args = append([]string{"taskset", "-c", cfg.cpus}, args...)
	}
	if h.logFile, err = os.Create(h.logPath); err != nil {
		return err
	}
	// Started straight from the harness: VmRSS and VmHWM are of the
	// server's own address space, which exec made new; unlike the rusage
	// max RSS (see spawn), they inherit nothing from the harness.
	h.cmd = exec.Command(args[0], args[1:]...)
	h.cmd.Env = append(os.Environ(), "GANTRY_ADMIN_TOKEN="+benchToken)
	h.cmd.Stdout = h.logFile
	h.cmd.Stderr = h.logFile
	if err := h.cmd.Start(); err != nil {
		return err
	}
	go func() {
		h.cmd.Wait()
		close(h.exited)
	}()
	h.api = &api.Client{Server: h.url, Token: benchToken, HTTP: &http.Client{Timeout: 60 * time.Second}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(h.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-h.exited:
			return fmt.Errorf("gantry server exited: %s\n%s", h.cmd.ProcessState, h.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gantry server not healthy after 20s: %v\n%s", err, h.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop stops the server with SIGTERM (drain) and waits for it.
func (h *serverHarness) stop() error {
	if h.cmd == nil || h.cmd.Process == nil {
		return nil
	}
	select {
	case <-h.exited:
		return fmt.Errorf("gantry server exited early: %s\n%s", h.cmd.ProcessState, h.logTail())
	default:
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		h.cmd.Process.Kill()
		<-h.exited
		return fmt.Errorf("gantry server did not stop within 30s of SIGTERM")
	}
	if !h.cmd.ProcessState.Success() {
		return fmt.Errorf("gantry server: %s\n%s", h.cmd.ProcessState, h.logTail())
	}
	return nil
}

func (h *serverHarness) close() {
	if h.cmd != nil && h.cmd.Process != nil {
		select {
		case <-h.exited:
		default:
			h.cmd.Process.Kill()
			<-h.exited
		}
	}
	if h.logFile != nil {
		h.logFile.Close()
	}
	if h.fifoFile != nil {
		h.fifoFile.Close()
	}
	if h.hooks != nil {
		h.hooks.CloseIdleConnections()
	}
}

func (h *serverHarness) logTail() string {
	b, _ := os.ReadFile(h.logPath)
	return tail(b, 3000)
}

// gantry runs the gantry client against the server.
func (h *serverHarness) gantry(args ...string) error {
	cmd := exec.Command(h.bin, args...)
	cmd.Env = append(os.Environ(), "GANTRY_SERVER="+h.url, "GANTRY_TOKEN="+benchToken)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gantry %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// hookRequest is a signed GitHub push delivery of commit to main.
func (h *serverHarness) hookRequest(commit, before string) (*http.Request, error) {
	h.delivery++
	id := fmt.Sprintf("bench-%08d-0000-0000-0000-000000000000", h.delivery)
	body, err := pushPayload(benchRepo, h.origin, commit, before, h.counter)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, h.url+"/hooks/github", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, []byte(benchSecret))
	mac.Write(body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/bench")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-GitHub-Hook-ID", "1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return req, nil
}

// post sends a delivery and returns the build it made.
func (h *serverHarness) post(req *http.Request) (api.Build, int, error) {
	resp, err := h.hooks.Do(req)
	if err != nil {
		return api.Build{}, 0, err
	}
	defer resp.Body.Close()
	var a struct {
		Message string      `json:"message"`
		Error   string      `json:"error"`
		Builds  []api.Build `json:"builds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return api.Build{}, resp.StatusCode, fmt.Errorf("webhook answer %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusCreated || len(a.Builds) != 1 {
		return api.Build{}, resp.StatusCode, fmt.Errorf("webhook answered %d %q %q with %d builds, want 201 and one build", resp.StatusCode, a.Message, a.Error, len(a.Builds))
	}
	return a.Builds[0], resp.StatusCode, nil
}

// deliver sends one push of commit, waits for its step's line in the FIFO
// and for the build to finish, and returns what it measured.
func (h *serverHarness) deliver(commit, before string) (deliverySample, error) {
	var s deliverySample
	req, err := h.hookRequest(commit, before)
	if err != nil {
		return s, err
	}
	if err := h.noStrayLines(); err != nil {
		return s, err
	}
	sent := time.Now()
	b, _, err := h.post(req)
	s.answer = time.Since(sent)
	if err != nil {
		return s, err
	}
	want := strconv.FormatInt(b.Number, 10)
	select {
	case l := <-h.lines:
		if l.text != want {
			return s, fmt.Errorf("FIFO line %q, want build number %s", l.text, want)
		}
		s.fifo = l.at.Sub(sent)
	case <-time.After(60 * time.Second):
		return s, fmt.Errorf("build %d: no step started within 60s\n%s", b.ID, h.logTail())
	}
	fb, err := h.waitFinished(b.ID, 60*time.Second, 2*time.Millisecond)
	if err != nil {
		return s, err
	}
	if fb.Status != "success" || len(fb.Jobs) != 1 || len(fb.Jobs[0].Steps) != 1 {
		return s, fmt.Errorf("build %d: %s %q, %d jobs; want success of one job of one step\n%s", fb.ID, fb.Status, fb.Reason, len(fb.Jobs), h.logTail())
	}
	j, st := fb.Jobs[0], fb.Jobs[0].Steps[0]
	if j.StartedAt == nil || st.StartedAt == nil || fb.FinishedAt == nil {
		return s, fmt.Errorf("build %d: job or step without a start time", fb.ID)
	}
	// Wall clock against wall clock: sent's monotonic reading is dropped.
	wall := sent.Round(0)
	s.created = fb.CreatedAt.Sub(wall)
	s.jobStarted = j.StartedAt.Sub(wall)
	s.stepStarted = st.StartedAt.Sub(wall)
	s.finished = fb.FinishedAt.Sub(wall)
	return s, nil
}

// noStrayLines fails if a step wrote to the FIFO when none should have.
func (h *serverHarness) noStrayLines() error {
	select {
	case l := <-h.lines:
		return fmt.Errorf("unexpected FIFO line %q", l.text)
	default:
		return nil
	}
}

// floor is the baseline of the step: the harness starts the step's shell,
// as the engine would (sh -e -c SCRIPT), writing a line to the FIFO, and
// returns the time from just before the start to reading the line.
func (h *serverHarness) floor() (time.Duration, error) {
	if err := h.noStrayLines(); err != nil {
		return 0, err
	}
	cmd := exec.Command(h.sh, "-e", "-c", "printf '%s\\n' floor > "+shellQuote(h.fifo))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var d time.Duration
	select {
	case l := <-h.lines:
		d = l.at.Sub(start)
		if l.text != "floor" {
			cmd.Wait()
			return 0, fmt.Errorf("FIFO line %q, want floor", l.text)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return 0, errors.New("floor: no line within 10s")
	}
	return d, cmd.Wait()
}

// waitFinished polls the build until it has finished.
func (h *serverHarness) waitFinished(id int64, within, every time.Duration) (*api.Build, error) {
	deadline := time.Now().Add(within)
	for {
		b, err := h.api.Build(context.Background(), id)
		if err == nil && b.FinishedAt != nil {
			return b, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("build %d not finished within %s (%v)\n%s", id, within, err, h.logTail())
		}
		time.Sleep(every)
	}
}

// throughput sends n deliveries of the known commit, conc at a time, and
// waits for every build to finish.
func (h *serverHarness) throughput(n, conc int) (throughput, error) {
	tp := throughput{n: n, concurrency: conc, statuses: map[int]int{}}
	if err := h.noStrayLines(); err != nil {
		return tp, err
	}
	reqs := make([]*http.Request, n)
	for i := range reqs {
		var err error
		if reqs[i], err = h.hookRequest(h.head, h.before); err != nil {
			return tp, err
		}
	}
	ids := make([]int64, n)
	answers := make([]time.Duration, n)
	errs := make([]error, n)
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	cpu0 := procCPU(h.cmd.Process.Pid)
	busy0, total0 := machineCPU()
	first := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t := time.Now()
				b, status, err := h.post(reqs[i])
				answers[i] = time.Since(t)
				ids[i], errs[i] = b.ID, err
				mu.Lock()
				tp.statuses[status]++
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	tp.sent = time.Since(first)
	tp.answers = answers
	if err := errors.Join(errs...); err != nil {
		return tp, fmt.Errorf("throughput deliveries: %w", err)
	}
	// Every step announces itself in the FIFO; until they all have, the
	// harness stays off the server's API.
	deadline := time.After(5 * time.Minute)
	for got := 0; got < n; got++ {
		select {
		case l := <-h.lines:
			tp.lastStep = max(tp.lastStep, l.at.Sub(first))
		case <-deadline:
			return tp, fmt.Errorf("throughput: %d of %d steps started within 5 minutes\n%s", got, n, h.logTail())
		}
	}
	wall := first.Round(0)
	var lastFinished time.Time
	var waits []float64
	for _, id := range ids {
		b, err := h.waitFinished(id, 2*time.Minute, 20*time.Millisecond)
		if err != nil {
			return tp, err
		}
		if b.Status == "success" {
			tp.succeeded++
		}
		if b.FinishedAt.After(lastFinished) {
			lastFinished = *b.FinishedAt
		}
		if len(b.Jobs) == 1 && b.Jobs[0].StartedAt != nil {
			waits = append(waits, ms(b.Jobs[0].StartedAt.Sub(b.CreatedAt)))
		}
	}
	tp.seen = time.Since(first)
	busy1, total1 := machineCPU()
	tp.serverCPU = procCPU(h.cmd.Process.Pid) - cpu0
	if total1 > total0 {
		tp.machineBusy = (busy1 - busy0) / (total1 - total0)
	}
	tp.elapsed = lastFinished.Sub(wall)
	tp.buildsPerSec = float64(n) / tp.elapsed.Seconds()
	tp.queueWaitP50ms = median(waits)
	return tp, nil
}

// pushPayload is a GitHub push event of one commit to main, shaped and
// sized like a real one (about 8 KB: GitHub sends the whole repository
// object), listing the file the commit changed.
func pushPayload(repo, cloneURL, commit, before string, n int) ([]byte, error) {
	owner, name, _ := strings.Cut(repo, "/")
	api := "https://api.github.com/repos/" + repo
	repository := map[string]any{
		"id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": name, "full_name": repo,
		"private": false, "html_url": "https://github.com/" + repo, "description": nil, "fork": false,
		"url": "https://github.com/" + repo, "created_at": 1557933565, "updated_at": "2019-05-15T15:20:41Z",
		"pushed_at": 1557933657, "git_url": "git://github.com/" + repo + ".git", "ssh_url": "git@github.com:" + repo + ".git",
		"clone_url": cloneURL, "svn_url": "https://github.com/" + repo, "homepage": nil, "size": 0,
		"stargazers_count": 0, "watchers_count": 0, "language": nil, "has_issues": true, "has_projects": true,
		"has_downloads": true, "has_wiki": true, "has_pages": false, "forks_count": 0, "mirror_url": nil,
		"archived": false, "disabled": false, "open_issues_count": 0, "license": nil, "forks": 0, "open_issues": 0,
		"watchers": 0, "default_branch": "main", "stargazers": 0, "master_branch": "main", "is_template": false,
		"topics": []string{}, "visibility": "public", "web_commit_signoff_required": false,
		"custom_properties": map[string]any{},
		"owner":             ghUser(owner),
	}
	for _, k := range []string{"forks", "keys", "collaborators", "teams", "hooks", "issue_events", "events",
		"assignees", "branches", "tags", "blobs", "git_tags", "git_refs", "trees", "statuses", "languages",
		"stargazers", "contributors", "subscribers", "subscription", "commits", "git_commits", "comments",
		"issue_comment", "contents", "compare", "merges", "archive", "downloads", "issues", "pulls",
		"milestones", "notifications", "labels", "releases", "deployments"} {
		repository[k+"_url"] = api + "/" + strings.ReplaceAll(k, "_", "/") + "{/sha}"
	}
	person := map[string]any{"name": "Bench", "email": "bench@localhost", "username": "bench"}
	c := map[string]any{
		"id": commit, "tree_id": strings.Repeat("1", 40), "distinct": true, "message": "change " + strconv.Itoa(n),
		"timestamp": "2019-05-15T15:20:30Z", "url": "https://github.com/" + repo + "/commit/" + commit,
		"author": person, "committer": person, "added": []string{}, "removed": []string{}, "modified": []string{"counter.txt"},
	}
	doc := map[string]any{
		"ref": "refs/heads/main", "before": before, "after": commit, "repository": repository,
		"pusher":  map[string]any{"name": "bench", "email": "bench@localhost"},
		"sender":  ghUser(owner),
		"created": false, "deleted": false, "forced": false, "base_ref": nil,
		"compare":     "https://github.com/" + repo + "/compare/" + before[:12] + "..." + commit[:12],
		"commits":     []any{c},
		"head_commit": c,
	}
	return json.Marshal(doc)
}

// ghUser is a user as GitHub's payloads show one.
func ghUser(login string) map[string]any {
	u := "https://api.github.com/users/" + login
	return map[string]any{
		"name": login, "email": login + "@users.noreply.github.com", "login": login, "id": 21031067,
		"node_id": "MDQ6VXNlcjIxMDMxMDY3", "avatar_url": "https://avatars1.githubusercontent.com/u/21031067?v=4",
		"gravatar_id": "", "url": u, "html_url": "https://github.com/" + login,
		"followers_url": u + "/followers", "following_url": u + "/following{/other_user}",
		"gists_url": u + "/gists{/gist_id}", "starred_url": u + "/starred{/owner}{/repo}",
		"subscriptions_url": u + "/subscriptions", "organizations_url": u + "/orgs", "repos_url": u + "/repos",
		"events_url": u + "/events{/privacy}", "received_events_url": u + "/received_events",
		"type": "User", "user_view_type": "public", "site_admin": false,
	}
}

// writeSamples writes every measured latency round as a CSV line of
// milliseconds, for looking at the series rather than its summary.
func writeSamples(path string, r *serverResults) error {
	var b strings.Builder
	b.WriteString("round,variant,answer,created,job_started,step_started,fifo,finished\n")
	for _, v := range []struct {
		name string
		ss   []deliverySample
	}{{"known", r.known}, {"new", r.fresh}} {
		for i, s := range v.ss {
			fmt.Fprintf(&b, "%d,%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", i, v.name,
				ms(s.answer), ms(s.created), ms(s.jobStarted), ms(s.stepStarted), ms(s.fifo), ms(s.finished))
		}
	}
	for i, d := range r.floor {
		fmt.Fprintf(&b, "%d,floor,,,,,%.3f,\n", i, ms(d))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// procStatus reads /proc/PID/status into a map of its fields; empty off
// Linux or once the process is gone.
func procStatus(pid int) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// procCPU is the user and system time of process pid and of the children
// it waited for, from /proc/PID/stat; 0 when unknown.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14, stime 15, cutime 16, cstime 17.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, v := range f[11:15] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// userHZ is the unit of /proc's CPU times: USER_HZ, 100 on Linux.
const userHZ = 100

// machineCPU is the busy and total time of all CPUs, in USER_HZ ticks,
// from the first line of /proc/stat.
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest times are already in user and nice
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// loadavg is the first three fields of /proc/loadavg, or "unknown".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// kib turns a /proc size ("12345 kB") into bytes, -1 when unknown.
func kib(v string) int64 {
	n, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return -1
	}
	return n << 10
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// fsType names the file system dir is on, for the report.
func fsType(dir string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown"
	}
	best, typ := "", "unknown"
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if (dir == f[1] || strings.HasPrefix(dir, strings.TrimSuffix(f[1], "/")+"/")) && len(f[1]) > len(best) {
			best, typ = f[1], f[2]
		}
	}
	return typ
}

// serverRows turns the -server results into the report's table.
func (r *serverResults) rows() []row {
	var rows []row
	durs := func(ss []deliverySample, f func(deliverySample) time.Duration) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = ms(f(s))
		}
		return out
	}
	fifo := func(s deliverySample) time.Duration { return s.fifo }
	stepAPI := func(s deliverySample) time.Duration { return s.stepStarted }
	floor := make([]float64, len(r.floor))
	for i, d := range r.floor {
		floor[i] = ms(d)
	}
	for _, v := range []struct {
		name string
		ss   []deliverySample
	}{{"known commit", r.known}, {"new commit", r.fresh}} {
		xs := durs(v.ss, fifo)
		rows = append(rows, row{
			measure:  fmt.Sprintf("1. webhook → first step running, %s (step's FIFO line, harness clock)", v.name),
			gantry:   fmtMS(xs, 1),
			baseline: fmtMS(floor, 2) + " floor: Go exec of the same `sh -e -c` writing the FIFO",
			diff:     fmt.Sprintf("API step started_at (server clock, before fork): %s", fmtMS(durs(v.ss, stepAPI), 1)),
			target:   fmt.Sprintf("median ≤ %g ms", targetLatencyMS),
			verdict:  check(median(xs) <= targetLatencyMS),
		})
	}
	tp := r.tp
	ans := make([]float64, len(tp.answers))
	for i, d := range tp.answers {
		ans[i] = ms(d)
	}
	rows = append(rows, row{
		measure: fmt.Sprintf("2. sustained: %d one-step builds, %d deliveries in flight", tp.n, tp.concurrency),
		gantry:  fmt.Sprintf("%.1f builds/s (%.2f s first send → last finished_at)", tp.buildsPerSec, tp.elapsed.Seconds()),
		baseline: fmt.Sprintf("all sent in %.2f s; webhook answer %s; build created → job started median %.0f ms; last step running at %.2f s; harness saw all finished at %.2f s",
			tp.sent.Seconds(), fmtMS(ans, 1), tp.queueWaitP50ms, tp.lastStep.Seconds(), tp.seen.Seconds()),
		diff: fmt.Sprintf("%d/%d succeeded; server CPU (with git and steps) %.1f ms/build; machine %.0f%% busy",
			tp.succeeded, tp.n, ms(tp.serverCPU)/float64(tp.n), 100*tp.machineBusy),
		target:  fmt.Sprintf("≥ %g builds/s", targetBuildsPerSec),
		verdict: check(tp.buildsPerSec >= targetBuildsPerSec && tp.succeeded == tp.n),
	})
	rows = append(rows, row{
		measure:  "3. idle memory: VmRSS after a registered repo, " + strconv.Itoa(2*r.cfg.warmup) + " finished builds and " + r.cfg.settle.String() + " idle",
		gantry:   fmtBytes(r.idleRSS),
		baseline: "VmHWM then " + fmtBytes(r.idleHWM),
		target:   fmt.Sprintf("≤ %g MiB", targetIdleMiB),
		verdict:  check(r.idleRSS >= 0 && mib(r.idleRSS) <= targetIdleMiB),
	})
	rows = append(rows, row{
		measure:  "3. peak memory: VmHWM after the throughput run",
		gantry:   fmtBytes(r.peakHWM),
		baseline: "VmRSS " + r.cfg.settle.String() + " after it: " + fmtBytes(r.afterRSS),
		target:   "reported",
		verdict:  info,
	})
	rows = append(rows, row{
		measure: "every build succeeded",
		gantry:  fmt.Sprintf("%d of %d", r.totalBuilds-r.failedBuilds, r.totalBuilds),
		target:  "all",
		verdict: check(r.failedBuilds == 0 && r.totalBuilds > 0),
	})
	return rows
}

func fmtBytes(b int64) string {
	if b < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", mib(b))
}

// writeServerReport writes the table, the stages and how to read them.
func writeServerReport(w io.Writer, r *serverResults, machine, cmdline string) {
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	fmt.Fprintln(w, "| measure | gantry server | baseline / detail | also | target | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, row := range r.rows() {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n",
			cell(row.measure), cell(row.gantry), cell(row.baseline), cell(row.diff), cell(row.target), row.verdict)
	}

	// Stages from the build API: each delivery's times, then their
	// medians (p90); the medians of stages need not add up to the total's.
	fmt.Fprintln(w, "\nWhere the time goes, per delivery (median, p90 in parentheses; ms):")
	fmt.Fprintln(w, "\n| stage | known commit | new commit | measured by |")
	fmt.Fprintln(w, "|---|---|---|---|")
	type stage struct {
		name, how string
		f         func(deliverySample) time.Duration
	}
	stages := []stage{
		{"send → webhook answered", "harness clock", func(s deliverySample) time.Duration { return s.answer }},
		{"send → build row created (hook: read, parse, verify; git fetch/cat-file; spec parse; plan)", "build created_at, server clock", func(s deliverySample) time.Duration { return s.created }},
		{"build created → job started (commit, wake agent, Lease, assignment, Started)", "job started_at − created_at", func(s deliverySample) time.Duration { return s.jobStarted - s.created }},
		{"job started → step started (agent: parse, Fetch check, checkout, engine, backend start)", "step started_at − job started_at", func(s deliverySample) time.Duration { return s.stepStarted - s.jobStarted }},
		{"step started → step's line read (report the start, fork/exec sh, printf)", "FIFO line, harness clock − step started_at", func(s deliverySample) time.Duration { return s.fifo - s.stepStarted }},
		{"send → first step running", "FIFO line, harness clock", func(s deliverySample) time.Duration { return s.fifo }},
		{"send → build finished", "build finished_at, server clock", func(s deliverySample) time.Duration { return s.finished }},
	}
	col := func(ss []deliverySample, f func(deliverySample) time.Duration) string {
		xs := make([]float64, len(ss))
		for i, s := range ss {
			xs[i] = ms(f(s))
		}
		return fmt.Sprintf("%.2f (%.2f)", median(xs), percentile(xs, 90))
	}
	for _, s := range stages {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", cell(s.name), col(r.known, s.f), col(r.fresh, s.f), cell(s.how))
	}

	fmt.Fprintf(w, `
Machine: %s. Server data on %s; server allowed CPUs %s; load average
%s at the start, %s at the end (other work on the machine shows there);
%d measured latency rounds after %d warm-up rounds. Command: %s

- 1: one delivery at a time: a signed GitHub push (an 8 KB payload like
  GitHub's, listing the changed file) POSTed over a kept-alive connection;
  the clock starts just before the POST. The step writes its build number
  into a FIFO that the harness reads; the time is taken as the line is read
  (harness monotonic clock). "Known commit": the mirror has the commit, the
  delivery ID is new. "New commit": a commit is made in the origin
  repository first (untimed), so the server fetches it. Each round runs
  known, new and the floor back to back, reversing the order every other
  round. The floor is the harness exec-ing `+"`sh -e -c`"+` with the same printf:
  the part of the figure that starting any shell costs. The API column is
  the step's started_at, the server's clock when the engine begins the step
  (before it reports the start and forks): a lower bound.
- Stages: from the build's created_at, the job's started_at and the
  step's started_at (server clock, same machine) against the harness's
  wall clock at the send.
- 2: every delivery has a new ID and the known commit; from the first send
  to the latest finished_at of the builds (server clock). The harness
  waits for every step's FIFO line before it polls the API, so that it
  does not load the server while it is measured. Harness, server, git and
  the steps share the machine's CPUs.
- 3: VmRSS and VmHWM from /proc/PID/status of the server, which the
  harness starts directly: they are of the server's own address space,
  made new by exec, so unlike a rusage max RSS they inherit nothing from
  the harness.
`, machine, r.fsType, r.cpusAllowed, r.loadBefore, r.loadAfter, r.cfg.rounds, r.cfg.warmup, cmdline)
}

// serverBenchMain is benchMain for -server: it measures, writes the report
// to out (or stdout) and returns the exit status.
func serverBenchMain(tmp, bin, rev string, cfg serverConfig, cmdline, outFile string, stdout io.Writer, progress func(string, ...any)) int {
	start := time.Now()
	res, err := runServerBench(tmp, bin, cfg, progress)
	if err != nil {
		progress("%v", err)
		return 1
	}
	progress("measured in %s", time.Since(start).Round(100*time.Millisecond))
	var b strings.Builder
	writeServerReport(&b, res, machine(bin, rev), cmdline)
	out := stdout
	if outFile != "" {
		f, err := os.Create(outFile)
		if err != nil {
			progress("%v", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	if _, err := io.WriteString(out, b.String()); err != nil {
		progress("write report: %v", err)
		return 1
	}
	if outFile != "" {
		progress("wrote %s", outFile)
	}
	for _, r := range res.rows() {
		if r.verdict == fail {
			return 1
		}
	}
	return 0
}
