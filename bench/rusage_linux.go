package main

import (
	"os"
	"syscall"
)

// maxRSS is the peak resident set of a waited-for process in bytes, or -1.
// Linux reports ru_maxrss in KiB.
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10
	}
	return -1
}
