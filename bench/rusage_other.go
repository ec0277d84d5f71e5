//go:build !linux

package main

import "os"

// maxRSS is unknown off Linux, where ru_maxrss has other units or none.
func maxRSS(*os.ProcessState) int64 { return -1 }
