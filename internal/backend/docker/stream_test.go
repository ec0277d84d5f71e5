package docker

import (
	"bytes"
	"strings"
	"testing"

	"github.com/docker/docker/pkg/stdcopy"
)

// TestOutputBeforePID: the engine forwards stdout and stderr on two
// pipes, so a step's first output may come before the wrapper's "pid"
// line, by more than heldMax under load. The copy must go on, and every
// byte arrive in order, the marker cut out (this once cut a 10 MiB
// output at 96 KiB with stdcopy's short write).
func TestOutputBeforePID(t *testing.T) {
	t.Parallel()
	var got bytes.Buffer
	marker := newMarker()
	r := &stepRun{out: &outWriter{w: &got}, pidSeen: make(chan struct{}), exitSeen: make(chan struct{}),
		endSeen: make(chan struct{}), marker: marker}

	var stream bytes.Buffer
	stdout := stdcopy.NewStdWriter(&stream, stdcopy.Stdout)
	stderr := stdcopy.NewStdWriter(&stream, stdcopy.Stderr)
	line := strings.Repeat("0123456789abcdef", 2048) // 32 KiB a frame, as the engine sends
	var want strings.Builder
	for range 5 { // 160 KiB before the PID
		stdout.Write([]byte(line))
		want.WriteString(line)
	}
	stderr.Write([]byte("pid 7\n"))
	stdout.Write([]byte("the rest\n"))
	want.WriteString("the rest\n")
	stdout.Write(marker)
	stderr.Write([]byte("exit 0\n"))

	if _, err := stdcopy.StdCopy(r.stdout(), r.stderr(), &stream); err != nil {
		t.Fatalf("StdCopy = %v, want the whole stream copied", err)
	}
	if got.String() != want.String() {
		t.Errorf("output is %d bytes, want %d", got.Len(), want.Len())
	}
	if !r.started || r.pid != 7 || !r.exited || r.exit != 0 || !r.ended {
		t.Errorf("started %v, pid %d, exited %v with %d, marker seen %v; want all seen", r.started, r.pid, r.exited, r.exit, r.ended)
	}
}
