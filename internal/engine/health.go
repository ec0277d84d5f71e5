package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/eval"
)

// runHealth runs the health-check step idx of the job (spec.Step.Health):
// tries of an HTTP GET or a command, Interval apart, each within Timeout,
// until Successes tries in a row passed (Success) or more than Retries
// failed (Failure, with the last try's outcome as the reason). Each try
// is a line of the step's log.
func (r *jobRun) runHealth(ctx context.Context, idx int, bj backend.Job, base []string, jobEnv map[string]string, sr *StepResult) {
	j := r.job
	h := j.Steps[idx].Health
	start := time.Now()
	r.emit(Event{Type: StepStarted, Job: j.Name, Step: sr.Name, StepIndex: idx, Attempt: 1, MaxAttempts: 1, Time: start})
	lw := &lineWriter{emit: func(b []byte) {
		r.emit(Event{Type: Log, Job: j.Name, Step: sr.Name, StepIndex: idx, Attempt: 1, Data: b})
	}}
	out := r.e.masker.NewWriter(lw)
	finish := func(status Status, exit int, reason string) {
		out.Flush()
		lw.Flush()
		sr.Status, sr.Reason, sr.ExitCode, sr.Attempts, sr.Duration = status, reason, exit, 1, time.Since(start)
		r.emit(Event{Type: StepFinished, Job: j.Name, Step: sr.Name, StepIndex: idx, Attempt: 1, MaxAttempts: 1,
			Status: status, ExitCode: exit, Duration: sr.Duration, Reason: reason})
	}

	ec := evalContext(r.plan, j, r.needs, jobEnv)
	what := h.Run
	if h.URL != "" {
		what = h.URL
	}
	t, err := eval.CompileTemplate(what)
	if err == nil {
		what, err = t.String(ec)
	}
	if err != nil {
		finish(Error, -1, "health: "+err.Error())
		return
	}
	var try func(context.Context) error
	if h.URL != "" {
		fmt.Fprintf(out, "health: GET %s until %d in a row pass (2xx), %s apart, each within %s; %d failures forgiven\n",
			what, h.Successes, h.Interval, h.Timeout, h.Retries)
		try = func(ctx context.Context) error { return probeURL(ctx, what) }
	} else {
		fmt.Fprintf(out, "health: running %q until %d in a row pass (exit code 0), %s apart, each within %s; %d failures forgiven\n",
			what, h.Successes, h.Interval, h.Timeout, h.Retries)
		cmd := append(append([]string(nil), r.e.opts.Shell...), what)
		env := append(append([]string(nil), base...), "GANTRY_STEP="+sr.Name)
		try = func(ctx context.Context) error {
			res, err := bj.Exec(ctx, backend.StepSpec{Name: sr.Name, Command: cmd, Env: env}, out)
			switch {
			case res.Stopped:
				return fmt.Errorf("did not finish within %s", h.Timeout)
			case err != nil:
				return err
			case res.ExitCode != 0:
				return fmt.Errorf("exit code %d", res.ExitCode)
			}
			return nil
		}
	}

	passed, failed := 0, 0
	for n := 1; ; n++ {
		if n > 1 {
			select {
			case <-ctx.Done():
			case <-time.After(h.Interval):
			}
		}
		if ctx.Err() != nil {
			status, reason := stoppedStatus(context.Cause(ctx))
			finish(status, -1, reason)
			return
		}
		tctx, cancel := context.WithTimeout(ctx, h.Timeout)
		err := try(tctx)
		cancel()
		if ctx.Err() != nil {
			continue // stopped from outside: said at the top of the loop
		}
		if err == nil {
			passed++
			fmt.Fprintf(out, "health: try %d passed (%d of %d in a row)\n", n, passed, h.Successes)
			if passed >= h.Successes {
				finish(Success, 0, "")
				return
			}
			continue
		}
		passed = 0
		failed++
		fmt.Fprintf(out, "health: try %d failed: %v (%d of %d failures forgiven)\n", n, err, min(failed, h.Retries), h.Retries)
		if failed > h.Retries {
			finish(Failure, 1, fmt.Sprintf("health check failed: %d tries failed, the last: %v", failed, err))
			return
		}
	}
}

// probeURL GETs url: nil for a 2xx answer, else what went wrong.
func probeURL(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "gantry-health-check")
	resp, err := healthClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no answer in time: %w", context.Cause(ctx))
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(strings.ToValidUTF8(string(body), "?"))
		if msg != "" {
			return fmt.Errorf("%s: %s", resp.Status, firstLineOf(msg))
		}
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// healthClient keeps no connections between tries: each try asks anew, as
// a load balancer would, and directly, never through a proxy.
var healthClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
