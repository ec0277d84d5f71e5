package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// spawnEnv, set in its environment, makes this program the launcher.
const spawnEnv = "GANTRY_BENCH_SPAWN"

// spawn is the launcher: `K PROGRAM ARG...` runs the program K times one
// after the other, each through exec.Command(...).Run() with this process's
// standard files and working directory, and writes to file descriptor 3
// "NANOSECONDS MAXRSS": the wall time of all K runs and the largest max RSS
// in bytes of any of them (-1 when unknown).
//
// The harness measures through it rather than directly because on Linux a
// child's max RSS starts at the peak RSS of the process that forked it:
// Go starts a child with vfork, so until exec the child runs in its parent's
// memory, and exec folds that memory's high-water mark into the child's
// rusage. Forked from the harness, every child would report at least the
// harness's own peak; forked from this small launcher, the floor is the
// launcher's, which the `sh -c true` baseline shows.
func spawn(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "bench launcher: want K PROGRAM ARG...")
		return 2
	}
	k, err := strconv.Atoi(args[0])
	if err != nil || k < 1 {
		fmt.Fprintf(os.Stderr, "bench launcher: bad count %q\n", args[0])
		return 2
	}
	report := os.NewFile(3, "report")
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, spawnEnv+"=") })
	argv := args[1:]

	rss := int64(-1)
	start := time.Now()
	for range k {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "bench launcher: %v\n", err)
			return 1
		}
		rss = max(rss, maxRSS(cmd.ProcessState))
	}
	wall := time.Since(start)
	if _, err := fmt.Fprintf(report, "%d %d\n", wall.Nanoseconds(), rss); err != nil {
		fmt.Fprintf(os.Stderr, "bench launcher: report: %v\n", err)
		return 1
	}
	return 0
}
