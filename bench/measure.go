package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// logLines is how many lines the throughput step prints.
const logLines = 1_000_000

// logPrefix is what gantry puts before each line of step "step" of job
// "job", and what the baseline's awk adds to match.
const logPrefix = "[job/step] "

// pipelines are the files the harness writes into its repository.
var pipelines = map[string]string{
	"echo.yml":    "jobs:\n  job:\n    steps:\n      - echo hi\n",
	"true1.yml":   stepsOf(1, "true"),
	"true100.yml": stepsOf(100, "true"),
	"seq.yml":     fmt.Sprintf("jobs:\n  job:\n    steps:\n      - name: step\n        run: seq 1 %d\n", logLines),
}

// stepsOf is a one-job pipeline of n steps that each run script.
func stepsOf(n int, script string) string {
	var b strings.Builder
	b.WriteString("jobs:\n  job:\n    steps:\n")
	for range n {
		fmt.Fprintf(&b, "      - %q\n", script)
	}
	return b.String()
}

// sample is one timed run.
type sample struct {
	wall time.Duration
	// maxRSS is the peak resident set in bytes, -1 when unknown.
	maxRSS int64
}

// harness runs gantry and the baselines in a scratch git repository.
type harness struct {
	self   string // this program, run as the launcher
	gantry string // absolute path of the binary
	sh     string // absolute path of sh
	repo   string
	// devnull is the standard output of runs whose output is not kept.
	devnull *os.File
	// errFile collects a run's standard error, to show when it fails.
	errFile *os.File
}

func newHarness(tmp, gantry string) (*harness, error) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return nil, err
	}
	for _, tool := range []string{"git", "seq", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	h := &harness{self: self, gantry: gantry, sh: sh, repo: filepath.Join(tmp, "repo")}
	if err := os.Mkdir(h.repo, 0o755); err != nil {
		return nil, err
	}
	for name, src := range pipelines {
		if err := os.WriteFile(filepath.Join(h.repo, name), []byte(src), 0o644); err != nil {
			return nil, err
		}
	}
	// A repository with a commit on a branch, as gantry run normally sees.
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "pipelines"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = h.repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("git %s: %w\n%s", args[0], err, out)
		}
	}
	if h.devnull, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
		return nil, err
	}
	if h.errFile, err = os.Create(filepath.Join(tmp, "stderr")); err != nil {
		h.devnull.Close()
		return nil, err
	}
	return h, nil
}

func (h *harness) close() {
	h.devnull.Close()
	h.errFile.Close()
}

// run starts the launcher (this program in spawn mode) in the repository
// with the output file created beforehand (empty outPath: /dev/null), and
// returns what the launcher measured of k runs of argv.
func (h *harness) run(outPath string, k int, argv ...string) (sample, error) {
	if err := h.errFile.Truncate(0); err != nil {
		return sample{}, err
	}
	if _, err := h.errFile.Seek(0, 0); err != nil {
		return sample{}, err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return sample{}, err
	}
	defer rd.Close()
	cmd := exec.Command(h.self, append([]string{strconv.Itoa(k)}, argv...)...)
	cmd.Env = append(os.Environ(), spawnEnv+"=1")
	cmd.Dir = h.repo
	cmd.Stdout = h.devnull
	cmd.Stderr = h.errFile
	cmd.ExtraFiles = []*os.File{wr}
	if outPath != "" {
		f, err := os.Create(outPath)
		if err != nil {
			wr.Close()
			return sample{}, err
		}
		defer f.Close()
		cmd.Stdout = f
	}
	err = cmd.Start()
	wr.Close()
	if err != nil {
		return sample{}, err
	}
	report, readErr := io.ReadAll(rd)
	if err := cmd.Wait(); err != nil {
		msg, _ := os.ReadFile(h.errFile.Name())
		return sample{}, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(msg, 2000))
	}
	if readErr != nil {
		return sample{}, readErr
	}
	var ns int64
	var s sample
	if _, err := fmt.Sscan(string(report), &ns, &s.maxRSS); err != nil {
		return sample{}, fmt.Errorf("launcher report %q: %w", report, err)
	}
	s.wall = time.Duration(ns)
	return s, nil
}

// Keys of the series a round fills.
const (
	fixedBase     = "fixed/baseline"
	fixedGantry   = "fixed/gantry"
	step1Base     = "step1/baseline"
	step1Gantry   = "step1/gantry"
	step100Base   = "step100/baseline"
	step100Gantry = "step100/gantry"
	logBase       = "log/baseline"
	logGantry     = "log/gantry"
)

// trial is one side of a measure.
type trial struct {
	key string
	run func() (sample, error)
}

// results holds every measured sample by series key, and the output checks.
type results struct {
	samples map[string][]sample
	// logErr is the first wrong gantry output file, nil when all were right;
	// baseErr the same for the baseline's.
	logErr, baseErr error
	logChecked      int
}

// measure runs one warm-up round and then n measured rounds.
func (h *harness) measure(n int, progress func(string, ...any)) (*results, error) {
	res := &results{samples: map[string][]sample{}}
	gantryLog := filepath.Join(filepath.Dir(h.repo), "gantry.log")
	baseLog := filepath.Join(filepath.Dir(h.repo), "baseline.log")
	awk := fmt.Sprintf(`seq 1 %d | awk '{print "%s" $0}' > %s`, logLines, logPrefix, baseLog)
	gantryRun := func(file, out string) func() (sample, error) {
		return func() (sample, error) { return h.run(out, 1, h.gantry, "run", "-f", file) }
	}
	// Each pair is a baseline and its gantry run, run back to back.
	pairs := [][2]trial{
		{{fixedBase, func() (sample, error) { return h.run("", 1, h.sh, "-c", "echo hi") }},
			{fixedGantry, gantryRun("echo.yml", "")}},
		{{step1Base, func() (sample, error) { return h.run("", 1, h.sh, "-c", "true") }},
			{step1Gantry, gantryRun("true1.yml", "")}},
		{{step100Base, func() (sample, error) { return h.run("", 100, h.sh, "-c", "true") }},
			{step100Gantry, gantryRun("true100.yml", "")}},
		{{logBase, func() (sample, error) { return h.run("", 1, h.sh, "-c", awk) }},
			{logGantry, gantryRun("seq.yml", gantryLog)}},
	}
	progress("warm-up round, then %d measured rounds", n)
	last := time.Now()
	for round := 0; round <= n; round++ {
		// Both sides create their log anew, rather than the baseline's
		// shell truncating a full one while it is timed.
		for _, f := range []string{gantryLog, baseLog} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		for _, p := range pairs {
			order := p
			if round%2 == 1 {
				order = [2]trial{p[1], p[0]}
			}
			for _, t := range order {
				s, err := t.run()
				if err != nil {
					return nil, err
				}
				if round > 0 {
					res.samples[t.key] = append(res.samples[t.key], s)
				}
			}
		}
		// Outside the timed runs: every gantry log, and the baseline's once.
		if err := checkLog(gantryLog, logPrefix, logLines); err != nil && res.logErr == nil {
			res.logErr = fmt.Errorf("round %d: %w", round, err)
		}
		res.logChecked++
		if round == 0 {
			res.baseErr = checkLog(baseLog, logPrefix, logLines)
		}
		if round > 0 && (time.Since(last) > 2*time.Second || round == n) {
			progress("round %d/%d", round, n)
			last = time.Now()
		}
	}
	return res, nil
}

// walls returns the series' wall times in milliseconds.
func (r *results) walls(key string) []float64 {
	var out []float64
	for _, s := range r.samples[key] {
		out = append(out, ms(s.wall))
	}
	return out
}

// rss returns the series' max RSS values in MiB; none when unknown.
func (r *results) rss(key string) []float64 {
	var out []float64
	for _, s := range r.samples[key] {
		if s.maxRSS >= 0 {
			out = append(out, float64(s.maxRSS)/(1<<20))
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// tail is the last n bytes of b.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
