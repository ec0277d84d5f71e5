// Command bench measures the speed and memory figures Gantry promises, each
// against a plain-shell baseline measured in the same run:
//
//   - fixed cost: `gantry run` of a 1-step `echo hi` pipeline against
//     `sh -c 'echo hi'`; at most 5 ms above it.
//   - cost per sequential step beyond starting its shell: a 100-step
//     pipeline of `true` against 100 runs of `sh -c true` from a Go loop;
//     at most 0.3 ms per step.
//   - log throughput: a step printing 1,000,000 lines into a file through
//     `gantry run` against seq piped into awk adding the same prefix; within
//     2x. Every gantry run's file is checked to hold exactly the 1,000,000
//     prefixed lines in order.
//   - peak memory: the largest max RSS of `gantry run` on the 100-step
//     pipeline; at most 20 MiB. It is shown for the 1M-line pipeline too.
//
// With -server it measures `gantry server` instead (see server.go): a
// signed GitHub push webhook to the first step running, for a known and for
// a new commit (median at most 20 ms), sustained one-step builds per second
// (at least 20) and the server's idle and peak memory (idle VmRSS at most
// 40 MiB).
//
// Usage, from the top of the module:
//
//	go run ./bench [-n 100] [-out FILE] [-gantry PATH]
//	go run ./bench -server [-n 200] [-builds 400] [-concurrency 16] [-agents N] [-cpus LIST] [-server-log FILE]
//
// It builds gantry (unless -gantry names a binary), makes a git repository
// in a temporary directory holding the pipelines, and then runs -n rounds
// after one unmeasured warm-up round. A round runs every measure's baseline
// and gantry back to back, alternating which goes first from round to round,
// so that drift in the machine's speed (other work, frequency, caches) hits
// both sides alike. It reports medians with their 90th percentiles.
//
// The result is a markdown table, on standard output or in the -out file;
// progress goes to standard error. The exit status is 1 when a target is
// missed, an output is wrong or the measuring itself failed.
//
// Every process is started, timed and waited for by a launcher, this
// program re-run in a mode of its own (see spawn), so that its max RSS is
// not raised to the harness's. Max RSS comes from the rusage that wait4
// returns for the gantry process, which on Linux is the largest of the
// process's own peak and those of the children it waited for (the step
// shells, whose figure is at most gantry's own at the time it started
// them), so it is gantry's own peak. Memory figures need Linux;
// elsewhere they read n/a.
package main

import (
	"debug/buildinfo"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	if os.Getenv(spawnEnv) != "" {
		os.Exit(spawn(os.Args[1:]))
	}
	os.Exit(benchMain(os.Args[1:], os.Stdout, os.Stderr))
}

func benchMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 100, "measured `rounds` of every measure (after one warm-up round)")
	outFile := fs.String("out", "", "write the markdown table to `file` instead of standard output")
	gantryBin := fs.String("gantry", "", "measure this gantry `binary` instead of building ./cmd/gantry")
	serverMode := fs.Bool("server", false, "measure `gantry server` instead: webhook to first step (-n rounds, default 200), sustained builds/s, memory")
	warmup := fs.Int("warmup", 5, "with -server: unmeasured latency `rounds` first (at least 1)")
	builds := fs.Int("builds", 400, "with -server: `deliveries` of the throughput run")
	concurrency := fs.Int("concurrency", 16, "with -server: deliveries in flight at once in the throughput run (`N`)")
	agents := fs.Int("agents", 0, "with -server: the server's --agents (`N`; 0: its default, one per CPU)")
	cpus := fs.String("cpus", "", "with -server: run the server under taskset -c `LIST` (e.g. 0-1)")
	settle := fs.Duration("settle", 2*time.Second, "with -server: idle `time` before memory is read")
	dataDir := fs.String("data", "", "with -server: make the server's data directory under `dir` (default: the temporary directory)")
	logLevel := fs.String("log-level", "info", "with -server: the server's --log-level (`level`)")
	serverLog := fs.String("server-log", "", "with -server: keep the server's standard output and error in `file`")
	samples := fs.String("samples", "", "with -server: write every latency sample to `file` as CSV")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench [flags]\n       go run ./bench -server [flags]\n\nMeasures gantry run's fixed cost, per-step cost, log throughput and peak\nmemory against plain-shell baselines, and prints a markdown table.\nWith -server: gantry server's webhook-to-first-step latency, sustained\nbuilds per second and idle and peak memory.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	nSet := false
	fs.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	if *serverMode && !nSet {
		*n = 200
	}
	if *n < 1 || fs.NArg() > 0 || *warmup < 1 || *builds < 1 || *concurrency < 1 || *agents < 0 {
		fs.Usage()
		return 2
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	tmp, err := os.MkdirTemp("", "gantry-bench-")
	if err != nil {
		progress("%v", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	bin, rev := *gantryBin, ""
	if bin == "" {
		progress("building gantry")
		if bin, rev, err = buildGantry(tmp); err != nil {
			progress("%v", err)
			return 1
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		progress("%v", err)
		return 1
	}
	if *serverMode {
		cfg := serverConfig{rounds: *n, warmup: *warmup, builds: *builds, concurrency: *concurrency,
			agents: *agents, cpus: *cpus, settle: *settle, dataDir: *dataDir, logLevel: *logLevel, logPath: *serverLog, samplesPath: *samples}
		return serverBenchMain(tmp, bin, rev, cfg, "go run ./bench "+strings.Join(args, " "), *outFile, stdout, progress)
	}
	h, err := newHarness(tmp, bin)
	if err != nil {
		progress("%v", err)
		return 1
	}
	defer h.close()

	start := time.Now()
	res, err := h.measure(*n, progress)
	if err != nil {
		progress("%v", err)
		return 1
	}
	progress("measured %d rounds in %s", *n, time.Since(start).Round(100*time.Millisecond))

	rows := res.rows()
	var b strings.Builder
	writeReport(&b, rows, *n, machine(bin, rev))
	out := stdout
	if *outFile != "" {
		f, err := os.Create(*outFile)
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
	if *outFile != "" {
		progress("wrote %s", *outFile)
	}
	for _, r := range rows {
		if r.verdict == fail {
			return 1
		}
	}
	return 0
}

// buildGantry builds ./cmd/gantry of the module around the working
// directory into dir and returns the binary's path and the module's git
// revision.
func buildGantry(dir string) (bin, rev string, err error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", "", fmt.Errorf("not inside the gantry module: run go run ./bench from it")
	}
	root := filepath.Dir(mod)
	bin = filepath.Join(dir, "gantry")
	// As the README builds it for release: static, without cgo.
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/gantry")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/gantry: %w\n%s", err, out)
	}
	// Best effort: the report says which code it measured.
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		rev = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			rev += " with uncommitted changes"
		}
	}
	return bin, rev, nil
}

// machine describes where the figures come from, for the report. rev is
// the measured code's revision, when known; otherwise the binary's build
// information may say.
func machine(bin, rev string) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil && rev == "" {
		var r, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				r = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if len(r) > 12 {
			r = r[:12]
		}
		if r != "" {
			rev = r
			if modified == "true" {
				rev += " with uncommitted changes"
			}
		}
	}
	if rev == "" {
		rev = "of unknown revision"
	}
	return fmt.Sprintf("%s/%s, %d CPUs (nproc), %s; %s; gantry %s",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu, runtime.Version(), rev)
}
