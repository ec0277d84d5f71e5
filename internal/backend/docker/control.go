package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/pkg/stdcopy"
)

// control is the job container's main process, a shell that reads
// commands from its stdin, through which the backend signals the job's
// processes. It runs as the image's user, as the steps do.
//
// Signals are sent from this long-running shell rather than from a fresh
// `docker exec kill`, because the engine can deliver a new exec's output
// seconds late while it waits for the output of an exited exec whose
// background process holds it open, which is exactly when a stop needs to
// be fast.
type control struct {
	conn  types.HijackedResponse
	mu    sync.Mutex // one command at a time
	seq   int
	lines chan string
}

// controlShell is the job container's entrypoint: it ignores SIGTERM, so
// that Close can send SIGTERM to every other process, and runs what the
// backend writes to its stdin.
var controlShell = []string{"sh", "-c", "trap '' TERM; exec sh -s"}

func newControl(conn types.HijackedResponse) *control {
	c := &control{conn: conn, lines: make(chan string, 16)}
	go func() {
		defer close(c.lines)
		stdcopy.StdCopy(&lineSplitter{lines: c.lines}, io.Discard, conn.Reader)
	}()
	return c
}

// run runs script in a subshell of the control shell and returns the one
// line it prints, or "" when there is none within ctx or a few seconds.
func (c *control) run(ctx context.Context, script string) string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	tag := strconv.Itoa(c.seq) + " "
	if _, err := fmt.Fprintf(c.conn.Conn, "echo \"%s$( %s )\"\n", tag, script); err != nil {
		return ""
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return ""
			}
			if r, found := strings.CutPrefix(l, tag); found {
				return r
			}
			// A late answer to an earlier command that timed out.
		case <-ctx.Done():
			return ""
		case <-timeout.C:
			return ""
		}
	}
}

func (c *control) close() {
	if c != nil {
		c.conn.Close()
	}
}

// lineSplitter sends each complete line written to it on lines, dropping
// lines when nobody takes them.
type lineSplitter struct {
	buf   []byte
	lines chan string
}

func (l *lineSplitter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		select {
		case l.lines <- string(l.buf[:i]):
		default:
		}
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 4096 {
		l.buf = l.buf[:0]
	}
	return len(p), nil
}
