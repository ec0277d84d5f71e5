package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// reapOrphans kills the process groups of processes whose environment
// carries this work directory's marker: steps (and their children) that a
// crashed agent left running. Only Linux's /proc is read; elsewhere it
// finds nothing. It returns how many groups it killed.
func reapOrphans(workDir string) int {
	if workDir == "" {
		return 0
	}
	abs, err := filepath.Abs(workDir)
	if err != nil {
		return 0
	}
	marker := []byte(markerVar + "=" + abs + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	killed := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(env, 0), marker) {
			continue
		}
		pgid, err := syscall.Getpgid(pid)
		if err != nil || pgid == syscall.Getpgrp() || killed[pgid] {
			continue
		}
		if syscall.Kill(-pgid, syscall.SIGKILL) == nil {
			killed[pgid] = true
		}
	}
	return len(killed)
}
