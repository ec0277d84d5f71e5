package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// leaseTTL is how long a claimed delivery is this server's before another
// may send it again: well past the POST's timeout.
func (n *Notifier) leaseTTL() time.Duration { return 2*n.opts.Timeout + 30*time.Second }

// sendLoop claims due deliveries and sends them, Concurrency at a time,
// until ctx ends; it also prunes old finished deliveries, hourly.
func (n *Notifier) sendLoop(ctx context.Context) {
	slots := make(chan struct{}, n.opts.Concurrency)
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	n.prune(ctx)
	failing := false
	for {
		select {
		case <-n.stopClaim:
			return
		case <-ctx.Done():
			return
		default:
		}
		if free := cap(slots) - len(slots); free > 0 {
			ds, err := n.st.ClaimDeliveries(ctx, n.opts.Name, free, n.leaseTTL())
			switch {
			case err != nil && ctx.Err() == nil:
				if !failing {
					n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "claim deliveries", slog.Any("err", err))
				}
				failing = true
			case err == nil:
				failing = false
			}
			for _, d := range ds {
				slots <- struct{}{}
				n.inflight.Add(1)
				go func() {
					defer n.inflight.Done()
					n.deliver(ctx, d)
					<-slots
					wake(n.sendWake)
				}()
			}
			if len(ds) == free {
				continue // there may be more due
			}
		}
		select {
		case <-ctx.Done():
		case <-n.stopClaim:
		case <-n.sendWake:
		case <-prune.C:
			n.prune(ctx)
		case <-time.After(n.opts.Poll):
		}
	}
}

func (n *Notifier) prune(ctx context.Context) {
	if k, err := n.st.PruneDeliveries(ctx, time.Now().Add(-n.opts.Retention)); err != nil && ctx.Err() == nil {
		n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "prune deliveries", slog.Any("err", err))
	} else if k > 0 {
		n.opts.Log.LogAttrs(ctx, slog.LevelInfo, "pruned deliveries", slog.Int("count", k))
	}
}

// outcome is what one attempt came to.
type outcome struct {
	status int    // the HTTP status; 0 without an answer
	err    string // what went wrong; empty when delivered
	// retry: the attempt may be repeated (a network error, a 5xx, a rate
	// limit); wait, when not zero, is how long the receiver asked for.
	retry bool
	wait  time.Duration
	// hold: the host rate-limited us; hold every delivery to it for wait.
	hold bool
}

// deliver sends one claimed delivery and records the outcome. When ctx
// ends mid-send (the server stops), the delivery is left due at once for
// the next server.
func (n *Notifier) deliver(ctx context.Context, d *store.Delivery) {
	o := n.attempt(ctx, d)
	now := time.Now()
	// Recorded even when ctx ended: the outcome is known.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	log := n.opts.Log.With(slog.Int64("delivery", d.ID), slog.String("kind", d.Kind), slog.String("repo", d.Repo),
		slog.String("event", d.Event), slog.Int("attempt", d.Attempts))
	d.LastStatus, d.LastError = o.status, o.err
	switch {
	case o.err == "":
		d.State = store.DeliveryDelivered
	case ctx.Err() != nil:
		// Stopped: not the receiver's fault; due again at once, here or
		// on another server.
		d.State, d.NextAttemptAt = store.DeliveryPending, now
		d.LastError = "interrupted: the server stopped"
	case !o.retry:
		d.State = store.DeliveryFailed
	default:
		wait := max(n.backoff(d.Attempts), o.wait)
		if o.hold && o.wait > 0 {
			if err := n.st.HoldDeliveries(fctx, d.Host, now.Add(o.wait)); err != nil {
				log.LogAttrs(ctx, slog.LevelWarn, "hold deliveries", slog.String("host", d.Host), slog.Any("err", err))
			}
			wait = o.wait // a rate limit says exactly when
		}
		next := now.Add(wait)
		switch {
		case d.Attempts >= n.opts.MaxAttempts:
			d.State, d.LastError = store.DeliveryFailed, fmt.Sprintf("gave up after %d attempts: %s", d.Attempts, o.err)
		case next.After(d.CreatedAt.Add(n.opts.MaxAge)):
			d.State, d.LastError = store.DeliveryFailed, fmt.Sprintf("gave up after %d attempts in %s: %s", d.Attempts, n.opts.MaxAge, o.err)
		default:
			d.State, d.NextAttemptAt = store.DeliveryPending, next
		}
	}
	if err := n.st.FinishDelivery(fctx, d); err != nil {
		// The lease was lost (it expired, the hook was removed): whoever
		// holds it now records the outcome.
		log.LogAttrs(ctx, slog.LevelWarn, "record delivery", slog.Any("err", err))
		return
	}
	switch d.State {
	case store.DeliveryDelivered:
		log.LogAttrs(ctx, slog.LevelDebug, "delivered", slog.Int("status", o.status))
	case store.DeliveryFailed:
		log.LogAttrs(ctx, slog.LevelWarn, "delivery failed", slog.Int("status", o.status), slog.String("err", d.LastError))
	case store.DeliveryPending:
		log.LogAttrs(ctx, slog.LevelInfo, "delivery will be retried", slog.Int("status", o.status), slog.String("err", d.LastError),
			slog.Time("next_attempt", d.NextAttemptAt))
	}
}

// backoff is the wait before the retry that follows attempt: Backoff,
// doubled with each attempt up to MaxBackoff, then between half and all
// of that at random, so that the deliveries a failure held back do not
// come back all at once.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.opts.Backoff
	for i := 1; i < attempt && d < n.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// attempt makes one POST of d (two for the first status of a GitHub
// deployment, which makes the deployment first).
func (n *Notifier) attempt(ctx context.Context, d *store.Delivery) outcome {
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	target, body, sign, o := n.request(ctx, d)
	if sign == nil {
		return o
	}
	_, _, o = n.post(ctx, target, d.Headers, body, sign, d.Attempts)
	return o
}

// post makes one POST and returns the answer's status and (the start of
// its) body, and what the attempt came to.
func (n *Notifier) post(ctx context.Context, target string, headers map[string]string, body []byte, sign func(http.Header), attempt int) (int, []byte, outcome) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, outcome{err: "bad URL: " + Redact(target, "")}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", n.opts.UserAgent)
	sign(req.Header)
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		// *url.Error names the URL, which for a chat hook is its secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, outcome{err: err.Error(), retry: true}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	return resp.StatusCode, answer, classify(resp, answer, time.Now(), attempt)
}

// request returns where d goes, its body, and the function that adds its
// credential or signature; when it cannot, a nil function and why.
func (n *Notifier) request(ctx context.Context, d *store.Delivery) (string, []byte, func(http.Header), outcome) {
	switch d.Kind {
	case store.DeliveryStatus, store.DeliveryDeployment:
		rep, ok := n.opts.Reporters[d.Forge]
		if !ok {
			return "", nil, nil, outcome{err: fmt.Sprintf("unknown forge %q", d.Forge)}
		}
		token, err := n.opts.Credentials(ctx, d.Repo)
		if err != nil {
			return "", nil, nil, outcome{err: "forge credentials: " + err.Error(), retry: true}
		}
		if token == "" {
			return "", nil, nil, outcome{err: fmt.Sprintf("no forge credentials for %s any more", d.Repo)}
		}
		sign := func(h http.Header) { rep.Authorize(h, token) }
		if d.Kind == store.DeliveryStatus {
			return d.URL, d.Payload, sign, outcome{}
		}
		target, body, o := n.deploymentTarget(ctx, d, sign)
		if target == "" {
			return "", nil, nil, o
		}
		return target, body, sign, outcome{}
	case store.DeliveryHook:
		h, err := n.st.Hook(ctx, d.HookID)
		if errors.Is(err, store.ErrNotFound) {
			return "", nil, nil, outcome{err: "hook removed"}
		}
		if err != nil {
			return "", nil, nil, outcome{err: "read hook: " + err.Error(), retry: true}
		}
		return h.URL, d.Payload, func(hd http.Header) {
			hd.Set(HeaderEvent, d.Event)
			hd.Set(HeaderDelivery, strconv.FormatInt(d.ID, 10))
			hd.Set(HeaderSignature, Sign(h.Secret, d.Payload))
		}, outcome{}
	}
	return "", nil, nil, outcome{err: fmt.Sprintf("unknown delivery kind %q", d.Kind)}
}

// classify turns an answer into an outcome, following what the forges
// document for rate limits:
//
//   - GitHub answers 403 or 429; with retry-after, wait that long; with
//     x-ratelimit-remaining: 0, until x-ratelimit-reset (epoch seconds);
//     otherwise at least a minute, longer with each retry.
//   - GitLab answers 429 with Retry-After, RateLimit-Reset (epoch seconds)
//     and RateLimit-ResetTime (an HTTP date).
//   - Bitbucket Cloud answers 429.
//
// Any 5xx and 408 are retried with backoff (503 with Retry-After holds the
// host); a 3xx or another 4xx is a failure that retrying will not mend.
func classify(resp *http.Response, body []byte, now time.Time, attempt int) outcome {
	o := outcome{status: resp.StatusCode}
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return o
	}
	o.err = fmt.Sprintf("%d %s", code, http.StatusText(code))
	if msg := bodyText(body); msg != "" {
		o.err += ": " + msg
	}
	limited := code == http.StatusTooManyRequests ||
		(code == http.StatusForbidden && (resp.Header.Get("Retry-After") != "" ||
			resp.Header.Get("X-Ratelimit-Remaining") == "0" || resp.Header.Get("Ratelimit-Remaining") == "0" ||
			strings.Contains(strings.ToLower(string(body)), "rate limit")))
	switch {
	case limited:
		o.retry, o.hold = true, true
		o.wait = rateLimitWait(resp.Header, now)
		if o.wait == 0 {
			// No hint: at least a minute, doubling with each retry.
			o.wait = min(time.Minute<<min(attempt-1, 6), time.Hour)
		}
	case code == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		o.retry, o.hold = true, true
		o.wait = rateLimitWait(resp.Header, now)
	case code >= 500 || code == http.StatusRequestTimeout:
		o.retry = true
		o.wait = rateLimitWait(resp.Header, now)
	case code >= 300 && code < 400:
		o.err = fmt.Sprintf("%d %s: redirected to %s; set the URL it points to", code, http.StatusText(code), Redact(resp.Header.Get("Location"), ""))
	}
	return o
}

// maxWait caps what a receiver may ask us to wait.
const maxWait = time.Hour

// rateLimitWait is how long the headers ask to wait, or 0 when they do
// not say.
func rateLimitWait(h http.Header, now time.Time) time.Duration {
	clamp := func(d time.Duration) time.Duration {
		return min(max(d, time.Second), maxWait)
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			return clamp(time.Duration(s) * time.Second)
		}
		if t, err := http.ParseTime(v); err == nil {
			return clamp(t.Sub(now))
		}
	}
	for _, p := range []string{"X-Ratelimit-", "Ratelimit-"} {
		if h.Get(p+"Remaining") != "0" {
			continue
		}
		if s, err := strconv.ParseInt(strings.TrimSpace(h.Get(p+"Reset")), 10, 64); err == nil && s > 0 {
			// Epoch seconds; a second more for clocks that differ.
			return clamp(time.Unix(s, 0).Sub(now) + time.Second)
		}
	}
	if t, err := http.ParseTime(h.Get("Ratelimit-Resettime")); err == nil {
		return clamp(t.Sub(now) + time.Second)
	}
	return 0
}

// bodyText is an answer's body as one short line, for the delivery log.
func bodyText(body []byte) string {
	s := strings.Join(strings.Fields(string(bytes.ToValidUTF8(body, []byte("?")))), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
