package git

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// catFile is one long-running `git cat-file --batch` on a mirror, which
// answers "is this commit here" and "what is this file at this commit"
// over a pipe: a fraction of a millisecond each, where a git process per
// question costs one or two. A question it cannot answer (it failed or
// ctx ended) goes to the one-process-per-call path, and so does every
// failed read of a file, which that path explains.
//
// Its answers are those of a git process started at the moment of the
// question: it sees objects that a fetch added after it started, because
// git looks for a loose object on disk at each question and re-reads the
// pack directory before it says that an object is missing, and objects
// are never removed from a mirror (gc.auto is 0). It keeps no answer.
//
// The process is started on first use and ends after idle without a
// question, so that an unused mirror holds no process.
type catFile struct {
	dir  string
	env  []string
	idle time.Duration

	mu    sync.Mutex // one question at a time; guards the rest
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	timer *time.Timer
}

// catFileIdle is how long a catFile process lives without a question.
const catFileIdle = 30 * time.Second

// errCatFile means the batch process could not answer; the caller asks git
// the slow way.
var errCatFile = errors.New("git cat-file --batch: no answer")

// object returns the type and content of the object that name (a full hash
// with a suffix such as ^{commit} or :path, no newline) names; found is
// false when git says it is missing. Any other failure is errCatFile, or
// ctx's error, and stops the process: the next call starts another.
func (c *catFile) object(ctx context.Context, name string) (typ string, data []byte, found bool, err error) {
	if strings.ContainsAny(name, "\n\r") {
		return "", nil, false, errCatFile
	}
	if err := ctx.Err(); err != nil {
		return "", nil, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		if err := c.start(); err != nil {
			return "", nil, false, errCatFile
		}
	}
	c.timer.Reset(c.idle)
	// A question cannot be taken back once asked: when ctx ends, the
	// process is killed, which ends the read below.
	cmd := c.cmd
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	typ, data, found, err = c.ask(name)
	if !stop() || err != nil {
		c.stop()
		if ctx.Err() != nil {
			return "", nil, false, ctx.Err()
		}
		return "", nil, false, errCatFile
	}
	return typ, data, found, nil
}

// ask writes one question and reads its answer: "<oid> <type> <size>\n",
// then size bytes and "\n"; or "<name> missing\n".
func (c *catFile) ask(name string) (typ string, data []byte, found bool, err error) {
	if _, err := io.WriteString(c.in, name+"\n"); err != nil {
		return "", nil, false, err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return "", nil, false, err
	}
	line = strings.TrimSuffix(line, "\n")
	if line == name+" missing" {
		return "", nil, false, nil
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		return "", nil, false, fmt.Errorf("unexpected answer %q", line)
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || size < 0 || size > 64<<20 {
		return "", nil, false, fmt.Errorf("unexpected answer %q", line)
	}
	data = make([]byte, size+1)
	if _, err := io.ReadFull(c.out, data); err != nil {
		return "", nil, false, err
	}
	if data[size] != '\n' {
		return "", nil, false, fmt.Errorf("answer for %q does not end in a newline", name)
	}
	return f[1], data[:size], true, nil
}

// start starts the process. The caller holds mu.
func (c *catFile) start() error {
	cmd := exec.Command("git", "--git-dir="+c.dir, "cat-file", "--batch")
	cmd.Env = c.env
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		in.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		in.Close()
		return err
	}
	c.cmd, c.in, c.out = cmd, in, bufio.NewReaderSize(out, 64<<10)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.idle, c.expire)
	}
	return nil
}

// expire stops the process when it was idle long enough.
func (c *catFile) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stop()
}

// stop ends the process, if any: closing its input ends it, killing it
// makes sure. The caller holds mu.
func (c *catFile) stop() {
	if c.cmd == nil {
		return
	}
	c.in.Close()
	c.cmd.Process.Kill()
	c.cmd.Wait()
	c.cmd, c.in, c.out = nil, nil, nil
	c.timer.Stop()
}
