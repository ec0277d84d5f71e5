package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantry-ci/gantry/internal/backend"
)

// wrapper starts a step: it checks the program exists, reports its own
// process ID (the step's process group) and, once the step has exited, the
// exit status, on its stderr, which is the backend's channel; the step's
// own stderr goes to its stdout, so that the two stay in order. It waits
// for the step rather than exec it so that it can report the step's exit
// even while a background process holds the output open. It catches
// SIGTERM (a no-op trap is reset in the step) so that a step that traps
// SIGTERM itself still gets its exit status reported.
//
// Its first argument is an end marker it writes on stdout once the step
// has exited: the engine forwards stdout and stderr on two pipes, so the
// exit status may arrive before the last of the output; the marker, in
// the output's own stream, says that all of it has arrived. It then waits
// for a line on its stdin before it exits: the engine closes an exec's
// stream about 2 s after its process exits, read or not, so the wrapper
// stays until the backend has read everything. The step's stdin is
// /dev/null, as it was without the wrapper.
const wrapper = `trap : TERM
m=$1; shift
command -v -- "$1" >/dev/null 2>&1 || { echo notfound >&2; exit 127; }
echo "pid $$" >&2
"$@" 2>&1 </dev/null
s=$?
printf '%s' "$m"
echo "exit $s" >&2
read -r _ || :
exit $s`

// newMarker returns an end marker no step prints by chance.
func newMarker() []byte {
	var b [12]byte
	rand.Read(b[:])
	return []byte("\x1egantry-end-" + hex.EncodeToString(b[:]) + "\x1e")
}

// endWait bounds the wait for the end marker once the exit status came: it
// only runs out when the wrapper could not write it.
const endWait = 30 * time.Second

// errClosed is what Exec reports for a step that Close stopped or that
// came after Close.
var errClosed = errors.New("job closed")

// job is a started job: its container, services and network.
type job struct {
	b         *Backend
	id, name  string
	workspace string

	// Set by Start, read-only after it returned.
	ctr      string
	network  string
	services []string

	ctl *control

	closeOnce sync.Once
	closing   chan struct{} // closed when Close begins
	closeDone chan struct{} // closed when the first Close has finished
	closeErr  error
}

// Exec runs one step in the job's container. See backend.Job and the
// package doc.
func (j *job) Exec(ctx context.Context, step backend.StepSpec, out io.Writer) (backend.Result, error) {
	notRun := backend.Result{ExitCode: -1}
	fail := func(res backend.Result, err error) (backend.Result, error) {
		return res, fmt.Errorf("exec step %q: %w", step.Name, err)
	}
	if ctx.Err() != nil {
		return fail(backend.Result{ExitCode: -1, Stopped: true}, context.Cause(ctx))
	}
	if len(step.Command) == 0 {
		return fail(notRun, errors.New("no command"))
	}
	select {
	case <-j.closing:
		return fail(notRun, errClosed)
	default:
	}
	dir := j.workspace
	if step.Dir != "" {
		dir = filepath.Join(dir, step.Dir)
	}
	// The API calls are short; the step's cancellation is ours to handle.
	actx := context.WithoutCancel(ctx)
	marker := newMarker()
	ec, err := j.b.cli.ContainerExecCreate(actx, j.ctr, container.ExecOptions{
		Cmd:          append([]string{"sh", "-c", wrapper, "sh", string(marker)}, step.Command...),
		Env:          step.Env,
		WorkingDir:   dir,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		if j.isClosing() {
			return fail(notRun, errClosed)
		}
		return fail(notRun, fmt.Errorf("create exec in container %.12s: %w", j.ctr, err))
	}
	hj, err := j.b.cli.ContainerExecAttach(actx, ec.ID, container.ExecAttachOptions{})
	if err != nil {
		if j.isClosing() {
			return fail(notRun, errClosed)
		}
		return fail(notRun, fmt.Errorf("start exec in container %.12s: %w", j.ctr, err))
	}
	r := &stepRun{j: j, step: step, execID: ec.ID, hj: hj, out: &outWriter{w: out}, pidSeen: make(chan struct{}),
		exitSeen: make(chan struct{}), marker: marker, endSeen: make(chan struct{})}
	return r.wait(ctx)
}

func (j *job) isClosing() bool {
	select {
	case <-j.closing:
		return true
	default:
		return false
	}
}

// stepRun is one running step.
type stepRun struct {
	j      *job
	step   backend.StepSpec
	execID string
	hj     types.HijackedResponse
	out    *outWriter

	// Written by the copying goroutine; mu guards them once it runs.
	mu       sync.Mutex
	pid      int           // the wrapper's PID in the container, 0 until known
	pidSeen  chan struct{} // closed once pid is known
	exit     int           // the step's exit status, valid when exited
	exited   bool
	exitSeen chan struct{} // closed once exited
	notFound bool
	held     bytes.Buffer // output before the wrapper reported its PID
	diag     []byte       // a partial line of the backend's channel
	started  bool

	// Only the copying goroutine uses these.
	marker  []byte        // the end marker the wrapper writes on stdout
	partial []byte        // output that may be the start of the marker
	ended   bool          // the marker was seen
	endSeen chan struct{} // closed once it was

	done chan struct{} // closed when wait returns
}

// emit writes output on, without the end marker: once the marker has
// passed, all of the step's own output has.
func (r *stepRun) emit(p []byte) (int, error) {
	n := len(p)
	if r.ended {
		_, err := r.out.Write(p)
		return n, err
	}
	buf := append(r.partial, p...)
	r.partial = nil
	if i := bytes.Index(buf, r.marker); i >= 0 {
		r.ended = true
		close(r.endSeen)
		buf = append(buf[:i:i], buf[i+len(r.marker):]...)
	} else {
		// Keep back the longest end of buf that may begin the marker.
		for k := min(len(r.marker)-1, len(buf)); k > 0; k-- {
			if bytes.HasPrefix(r.marker, buf[len(buf)-k:]) {
				r.partial = bytes.Clone(buf[len(buf)-k:])
				buf = buf[:len(buf)-k]
				break
			}
		}
	}
	if len(buf) == 0 {
		return n, nil
	}
	_, err := r.out.Write(buf)
	return n, err
}

// heldMax bounds the output held before the wrapper's PID arrives. The PID
// is written first, but on stderr, which the engine forwards on a pipe of
// its own: under load, more than this of stdout can come before it.
const heldMax = 64 << 10

// stdout is the step's output.
func (r *stepRun) stdout() io.Writer { return writerFunc(r.writeOut) }

func (r *stepRun) writeOut(p []byte) (int, error) {
	r.mu.Lock()
	if !r.started {
		// The engine's error for an exec that could not start comes on
		// stdout; hold output until the wrapper said it runs.
		r.held.Write(p)
		if r.held.Len() <= heldMax {
			r.mu.Unlock()
			return len(p), nil
		}
		r.started = true
		held := bytes.Clone(r.held.Bytes())
		r.held.Reset()
		r.mu.Unlock()
		// What was held, p included, goes out now; the count is p's, as
		// the writer's contract (and stdcopy, which stops the stream on a
		// short or long count) wants.
		if _, err := r.emit(held); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	r.mu.Unlock()
	return r.emit(p)
}

// stderr is the backend's channel from the wrapper: "pid N", "notfound",
// "exit N" lines.
func (r *stepRun) stderr() io.Writer { return writerFunc(r.writeDiag) }

func (r *stepRun) writeDiag(p []byte) (int, error) {
	r.mu.Lock()
	r.diag = append(r.diag, p...)
	var flush []byte
	for {
		i := bytes.IndexByte(r.diag, '\n')
		if i < 0 {
			break
		}
		line := string(r.diag[:i])
		r.diag = r.diag[i+1:]
		switch {
		case line == "notfound":
			r.notFound = true
		case strings.HasPrefix(line, "pid "):
			if n, err := strconv.Atoi(line[4:]); err == nil && r.pid == 0 {
				r.pid = n
				close(r.pidSeen)
				if !r.started {
					r.started = true
					flush = bytes.Clone(r.held.Bytes())
					r.held.Reset()
				}
			}
		case strings.HasPrefix(line, "exit "):
			if n, err := strconv.Atoi(line[5:]); err == nil && !r.exited {
				r.exit, r.exited = n, true
				close(r.exitSeen)
			}
		}
	}
	if len(r.diag) > 1024 {
		r.diag = r.diag[:0]
	}
	r.mu.Unlock()
	if len(flush) > 0 {
		if _, err := r.emit(flush); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// wait copies the step's output until the step ends, is stopped, or its job
// is closed, and returns its result.
func (r *stepRun) wait(ctx context.Context) (backend.Result, error) {
	r.done = make(chan struct{})
	defer close(r.done)
	defer r.hj.Close()
	copyDone := make(chan error, 1)
	var copyErr error // set before copyDone is sent on
	go func() {
		_, err := stdcopy.StdCopy(r.stdout(), r.stderr(), readAhead(r.hj.Reader, r.done))
		copyErr = err
		copyDone <- err
	}()
	var (
		streamDone   bool
		exitSeen     = r.exitSeen
		endSeen      <-chan struct{}
		exitDeadline <-chan time.Time
	)
	fail := func(res backend.Result, err error) (backend.Result, error) {
		return res, fmt.Errorf("exec step %q: %w", r.step.Name, err)
	}
	for !streamDone {
		select {
		case <-copyDone:
			streamDone = true
		case <-exitSeen:
			// The step's main process has exited; its output may still be
			// on its way: wait for the end marker.
			exitSeen, endSeen = nil, r.endSeen
			exitDeadline = time.After(endWait)
		case <-endSeen:
			// All the step's output is here: let the wrapper exit. A
			// background process may still hold the output open: give it
			// WaitDelay.
			endSeen = nil
			r.hj.Conn.Write([]byte("\n"))
			exitDeadline = time.After(r.j.b.waitDelay)
		case <-exitDeadline:
			r.hj.Close()
			<-copyDone
			streamDone = true
		case <-ctx.Done():
			res := r.stop(copyDone, context.Cause(ctx))
			return fail(res, context.Cause(ctx))
		case <-r.j.closing:
			// Close stops the container's processes; wait until it has.
			select {
			case <-copyDone:
			case <-r.j.closeDone:
				r.hj.Close()
				<-copyDone
			}
			res := r.result(context.Background(), true)
			return fail(res, errClosed)
		}
		if streamDone && r.out.err != nil {
			// The output cannot be written: stop the step rather than
			// leave it blocked on a full pipe.
			res := r.stop(copyDone, r.out.err)
			return fail(res, fmt.Errorf("write output: %w", r.out.err))
		}
	}
	if !r.ended && len(r.partial) > 0 {
		// It looked like the start of the marker, but the marker never came.
		r.out.Write(r.partial)
		r.partial = nil
	}
	r.mu.Lock()
	started, notFound, held := r.started, r.notFound, r.held.String()
	r.mu.Unlock()
	switch {
	case notFound:
		return fail(backend.Result{ExitCode: -1}, fmt.Errorf("%s: command not found", r.step.Command[0]))
	case !started:
		msg := strings.TrimSpace(held)
		if msg == "" {
			msg = "the step's process did not start (does the image have sh?)"
		}
		return fail(backend.Result{ExitCode: -1}, errors.New(msg))
	}
	if r.out.err != nil {
		res := r.stop(copyDone, r.out.err)
		return fail(res, fmt.Errorf("write output: %w", r.out.err))
	}
	res := r.result(ctx, false)
	if res.ExitCode == -1 && !res.Stopped {
		// The stream ended, but the step did not: the engine cut it.
		cause := copyErr
		if cause == nil {
			cause = io.ErrUnexpectedEOF
		}
		return fail(res, fmt.Errorf("the engine ended the step's output stream before the step ended: %w", cause))
	}
	return res, nil
}

// result is the step's exit status, from the wrapper or, when the wrapper
// was killed, from the engine.
func (r *stepRun) result(ctx context.Context, stopped bool) backend.Result {
	r.mu.Lock()
	exit, exited := r.exit, r.exited
	r.mu.Unlock()
	code := -1
	if exited {
		code = exit
	} else {
		// The engine may not have recorded the exit yet when the stream
		// ends (seen on a loaded machine): ask again for a while.
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for {
			insp, err := r.j.b.cli.ContainerExecInspect(ictx, r.execID)
			if err == nil && !insp.Running {
				code = insp.ExitCode
				break
			}
			select {
			case <-ictx.Done():
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
	}
	if stopped && (code == 128+15 || code == 128+9) {
		code = -1
	}
	return backend.Result{ExitCode: code, Stopped: stopped}
}

// stop stops the step's process group: SIGTERM, up to KillGrace for it to
// be gone, SIGKILL; then it waits for the output to end, at most
// WaitDelay, and returns the step's result.
func (r *stepRun) stop(copyDone <-chan error, cause error) backend.Result {
	j := r.j
	ctx := context.Background()
	select {
	case <-r.pidSeen:
	case <-copyDone:
		// Ended (or never started) on its own meanwhile.
		return r.result(ctx, true)
	case <-time.After(j.b.killGrace):
	}
	r.mu.Lock()
	pid := r.pid
	r.mu.Unlock()
	j.b.log.LogAttrs(ctx, slog.LevelInfo, "stopping step",
		slog.String("job_id", j.id), slog.String("job", j.name), slog.String("step", r.step.Name),
		slog.Int("pgid", pid), slog.String("cause", cause.Error()))
	if pid > 0 {
		grace := time.NewTimer(j.b.killGrace)
		defer grace.Stop()
		j.signalGroup(ctx, pid, "TERM")
		gone := false
		for !gone {
			if j.groupGone(ctx, pid) {
				gone = true
				break
			}
			select {
			case <-grace.C:
			case <-j.closing:
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		if !gone {
			j.signalGroup(ctx, pid, "KILL")
			j.b.log.LogAttrs(ctx, slog.LevelWarn, "killed processes that outlived SIGTERM",
				slog.String("job_id", j.id), slog.Int("pgid", pid), slog.Duration("grace", j.b.killGrace))
		}
	}
	select {
	case <-copyDone:
	case <-time.After(j.b.waitDelay):
		r.hj.Close()
		<-copyDone
	}
	return r.result(ctx, true)
}

// signalGroup sends sig (and SIGCONT, so that a stopped process can act on
// it) to process group pgid in the container.
func (j *job) signalGroup(ctx context.Context, pgid int, sig string) {
	g := strconv.Itoa(pgid)
	j.ctl.run(ctx, "kill -s "+sig+" -"+g+" 2>/dev/null; kill -s CONT -"+g+" 2>/dev/null; echo done")
}

// groupGone reports whether process group pgid has no member left in the
// container.
func (j *job) groupGone(ctx context.Context, pgid int) bool {
	return j.ctl.run(ctx, "kill -0 -"+strconv.Itoa(pgid)+" 2>/dev/null && echo alive || echo gone") == "gone"
}

// Close stops what the job's steps left running and removes the job's
// containers and network. See the package doc.
func (j *job) Close(ctx context.Context) error {
	j.closeOnce.Do(func() {
		close(j.closing)
		defer close(j.closeDone)
		j.terminateAll(ctx)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		j.closeErr = j.remove(rctx)
		if j.closeErr != nil {
			j.closeErr = fmt.Errorf("close job %q: %w", j.name, j.closeErr)
		}
	})
	select {
	case <-j.closeDone:
		return j.closeErr
	case <-ctx.Done():
		return fmt.Errorf("close job %q: %w", j.name, context.Cause(ctx))
	}
}

// terminateAll sends SIGTERM to every process of the job's container but
// its init and main process, and waits up to KillGrace for them to exit.
func (j *job) terminateAll(ctx context.Context) {
	if j.ctr == "" {
		return
	}
	// kill -1 reaches every process but PID 1 and the shell itself; the
	// main process ignores SIGTERM.
	if j.ctl.run(ctx, "kill -s TERM -1 2>/dev/null; kill -s CONT -1 2>/dev/null; echo done") != "done" {
		return
	}
	grace := time.NewTimer(j.b.killGrace)
	defer grace.Stop()
	for {
		// Left when all are gone: init, the main process and the subshell
		// that counts.
		if j.ctl.run(ctx, "set -- /proc/[0-9]*; [ $# -le 3 ] && echo gone || echo alive") == "gone" {
			return
		}
		select {
		case <-grace.C:
			return
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// remove removes the job's containers and network.
func (j *job) remove(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, id := range append([]string{j.ctr}, j.services...) {
		if id == "" {
			continue
		}
		wg.Go(func() {
			if err := removeContainer(ctx, j.b.cli, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if j.network != "" {
		if err := j.b.cli.NetworkRemove(ctx, j.network); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %.12s: %w", j.network, err))
		}
	}
	j.ctl.close()
	return errors.Join(errs...)
}

// outWriter passes a step's output on and keeps the first write error.
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = err
	}
	return n, err
}

// readAhead reads r in a goroutine of its own, up to readAheadMax ahead of
// the caller, until done is closed: a consumer slowed down for a moment (a
// busy machine, a slow log sink) does not hold the engine's stream back.
func readAhead(r io.Reader, done <-chan struct{}) io.Reader {
	ch := make(chan []byte, readAheadMax/readAheadChunk)
	ra := &aheadReader{ch: ch}
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, readAheadChunk)
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case ch <- buf[:n]:
				case <-done: // nobody reads any more
					ra.err = io.ErrClosedPipe
					return
				}
			}
			if err != nil {
				ra.err = err // read by the consumer only after ch is closed
				return
			}
		}
	}()
	return ra
}

const (
	readAheadChunk = 32 << 10
	readAheadMax   = 8 << 20
)

type aheadReader struct {
	ch  chan []byte
	cur []byte
	err error
}

func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		b, ok := <-a.ch
		if !ok {
			return 0, a.err
		}
		a.cur = b
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}
