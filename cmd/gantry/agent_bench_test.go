package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkAgentIdleRSS reports the resident memory of an idle `gantry
// agent` process, connected to a server and waiting for work after it
// ran a job (the README's figure; the target is at most 20 MiB). The agent
// is the binary users run, built as the README builds it (static, no
// cgo), not this test binary with the test code linked in. Most of its
// memory is the binary's own pages (RssFile): the code that ran and the
// data the garbage collector scans.
//
//	go test -run '^$' -bench AgentIdleRSS -benchtime 1x ./cmd/gantry
func BenchmarkAgentIdleRSS(b *testing.B) {
	repoDir, sha := makeRepo(b, map[string]string{".gantry.yml": "jobs: {test: {steps: [\"echo hi\"]}}\n"})
	s := startServer(b, b.TempDir(), "--agents", "0")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		b.Fatal(errOut)
	}
	a := s.startAgentBin(releaseBinary(b), "idle", s.agentToken("ci"), b.TempDir(), "--capacity", "4")
	id := s.send(pushDelivery(b, "github", "acme/app", "main", sha, "d1", "k")).body.Builds[0].ID
	if bd := s.waitBuild(id, 30*time.Second); bd.Status != "success" {
		b.Fatalf("build = %s, want success", bd.Status)
	}
	var kib, anon, file int
	for b.Loop() {
		time.Sleep(3 * time.Second) // idle: four slots in their long polls
		kib, anon, file = procStatus(b, a.cmd.Process.Pid, "VmRSS"), procStatus(b, a.cmd.Process.Pid, "RssAnon"), procStatus(b, a.cmd.Process.Pid, "RssFile")
	}
	b.ReportMetric(float64(kib)/1024, "MiB-RSS")
	b.ReportMetric(float64(anon)/1024, "MiB-anon")
	b.ReportMetric(float64(file)/1024, "MiB-file")
	b.ReportMetric(0, "ns/op")
}

// releaseBinary builds gantry as the README builds it for release, a
// static binary without cgo, and returns its path.
func releaseBinary(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "gantry")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// procStatus reads a field of a process's /proc status in KiB (VmRSS, its
// resident set size; RssAnon, RssFile, its parts).
func procStatus(b *testing.B, pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc status", field)
	return 0
}
