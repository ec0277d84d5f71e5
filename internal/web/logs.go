package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store"
)

// pageLines is how many lines of a log a page shows at once: the tail
// when it opens, and as many more for each "earlier lines".
const pageLines = 1000

// logLine is one line of a job's log and where it is: line Index of the
// chunk Seq.
type logLine struct {
	Seq   int64
	Index int
	Step  int
	Text  string
}

func splitChunk(c *store.LogChunk) []logLine {
	var out []logLine
	data := c.Data
	for i := 0; len(data) > 0; i++ {
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		out = append(out, logLine{Seq: c.Seq, Index: i, Step: c.Step, Text: string(line)})
		data = rest
	}
	return out
}

// cursor is a place in a log: before line Line of chunk Seq (Seq 0: the
// end of the log).
type cursor struct {
	Seq  int64
	Line int
}

// tail returns up to want lines of job j's log (of step only, when step
// >= 0) that come before cur, and whether earlier ones exist. It reads
// from the end, a few chunks at a time, so a log of millions of lines
// costs what the page shows.
func (h *Handler) tail(ctx context.Context, j *store.Job, step int, cur cursor, want int) ([]logLine, bool, error) {
	const batch = 50
	var out []logLine
	before := cur.Seq
	if cur.Seq > 0 && cur.Line > 0 {
		cs, err := h.Store.LogsBefore(ctx, j.ID, step, cur.Seq+1, 1)
		if err != nil {
			return nil, false, err
		}
		if len(cs) == 1 && cs[0].Seq == cur.Seq {
			ls := splitChunk(cs[0])
			out = ls[:min(cur.Line, len(ls))]
		}
	}
	for len(out) < want {
		cs, err := h.Store.LogsBefore(ctx, j.ID, step, before, batch)
		if err != nil {
			return nil, false, err
		}
		if len(cs) == 0 {
			break
		}
		var ls []logLine
		for _, c := range cs {
			ls = append(ls, splitChunk(c)...)
		}
		out = append(ls, out...)
		before = cs[0].Seq
		if len(cs) < batch {
			break
		}
	}
	if len(out) > want {
		out = out[len(out)-want:]
	}
	if len(out) == 0 {
		return nil, false, nil
	}
	if out[0].Index > 0 {
		return out, true, nil
	}
	more, err := h.Store.LogsBefore(ctx, j.ID, step, out[0].Seq, 1)
	return out, len(more) > 0, err
}

// stepName names step i of j as a log's section header.
func stepName(j *store.Job, i int) string {
	if i < len(j.Steps) && j.Steps[i].Name != "" {
		return j.Steps[i].Name
	}
	return fmt.Sprintf("step %d", i+1)
}

// renderLines renders log lines as HTML. With headers, a line of another
// step than the one before it (*last) starts with that step's header.
func renderLines(b *strings.Builder, j *store.Job, lines []logLine, headers bool, last *int, a *ansi) {
	for _, l := range lines {
		if headers && l.Step != *last {
			fmt.Fprintf(b, `<div class="sh">▸ %s</div>`, html.EscapeString(stepName(j, l.Step)))
		}
		*last = l.Step
		b.WriteString(`<div class="l">`)
		a.line(b, l.Text)
		b.WriteString(`</div>`)
	}
}

// logView is a page of a log as the build page shows it.
type logView struct {
	Job   *store.Job
	Step  int // -1: every step
	Lines template.HTML
	Count int
	// Earlier links to the page of lines before these: EarlierHref
	// without JavaScript, EarlierFragment with.
	Earlier                      bool
	EarlierHref, EarlierFragment string
	// Follow is the events URL that brings the lines that come next, while
	// the page shows the end of the log of a build that runs.
	Follow string
	// Paged: the page shows earlier lines, not the end.
	Paged   bool
	EndHref string
	RawHref string
	JobRaw  string
}

func (h *Handler) logView(ctx context.Context, b *store.Build, j *store.Job, step int, cur cursor) (*logView, error) {
	v := &logView{Job: j, Step: step, Paged: cur.Seq > 0}
	q := url.Values{"job": {j.Name}}
	if step >= 0 {
		q.Set("step", strconv.Itoa(step))
	}
	buildURL := fmt.Sprintf("/builds/%d", b.ID)
	v.EndHref = buildURL + "?" + q.Encode() + "#log"
	v.RawHref = buildURL + "/raw?" + q.Encode()
	v.JobRaw = buildURL + "/raw?" + url.Values{"job": {j.Name}}.Encode()
	// Where following starts: the job's last chunk now, read before the
	// tail so that no chunk falls between the two.
	var last int64
	if cur.Seq == 0 {
		cs, err := h.Store.LogsBefore(ctx, j.ID, -1, 0, 1)
		if err != nil {
			return nil, err
		}
		if len(cs) > 0 {
			last = cs[0].Seq
			cur.Seq = last + 1
		}
	}
	lines, earlier, err := h.tail(ctx, j, step, cur, pageLines)
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	lastStep := -1
	var a ansi
	renderLines(&sb, j, lines, step < 0, &lastStep, &a)
	v.Lines, v.Count = template.HTML(sb.String()), len(lines)
	if earlier {
		eq := url.Values{"job": {j.Name}, "before": {strconv.FormatInt(lines[0].Seq, 10)}, "line": {strconv.Itoa(lines[0].Index)}}
		if step >= 0 {
			eq.Set("step", strconv.Itoa(step))
		}
		v.Earlier = true
		v.EarlierHref = buildURL + "?" + eq.Encode() + "#log"
		eq.Set("fragment", "1")
		v.EarlierFragment = buildURL + "/log?" + eq.Encode()
	}
	if !v.Paged && !store.Finished(b.Status) {
		fq := url.Values{"job": {j.Name}, "after": {strconv.FormatInt(last, 10)}, "ls": {strconv.Itoa(lastStep)}}
		if step >= 0 {
			fq.Set("step", strconv.Itoa(step))
		}
		v.Follow = buildURL + "/events?" + fq.Encode()
	}
	return v, nil
}

// logFragment answers the "earlier lines" of a log as HTML for the page's
// script to put in place: a link to the lines before them, if any, then
// the lines.
func (h *Handler) logFragment(w http.ResponseWriter, r *http.Request, s *session) error {
	b, err := h.buildOf(r, s, store.RoleViewer)
	if err != nil {
		return err
	}
	j, step, cur, err := logQuery(r, b)
	if err != nil {
		return err
	}
	if cur.Seq == 0 {
		return badf("before is required")
	}
	v, err := h.logView(r.Context(), b, j, step, cur)
	if err != nil {
		return err
	}
	return h.render(w, http.StatusOK, "build", "earlier", v)
}

// logQuery reads the job, step and cursor a log request names.
func logQuery(r *http.Request, b *store.Build) (*store.Job, int, cursor, error) {
	q := r.URL.Query()
	var j *store.Job
	for _, jj := range b.Jobs {
		if jj.Name == q.Get("job") {
			j = jj
		}
	}
	if j == nil {
		return nil, 0, cursor{}, fmt.Errorf("build %d has no job %q: %w", b.ID, q.Get("job"), store.ErrNotFound)
	}
	step, err := intParam(q, "step", -1)
	if err != nil {
		return nil, 0, cursor{}, err
	}
	before, err := intParam(q, "before", 0)
	if err != nil {
		return nil, 0, cursor{}, err
	}
	line, err := intParam(q, "line", 0)
	if err != nil {
		return nil, 0, cursor{}, err
	}
	return j, int(step), cursor{Seq: before, Line: int(line)}, nil
}

// intParam reads a query value that must be a number of at least -1.
func intParam(q url.Values, name string, def int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < -1 {
		return 0, badf("%s %q: want a number", name, v)
	}
	return n, nil
}

// raw streams a job's log (or one step's) as plain text, a page of chunks
// at a time, however long it is.
func (h *Handler) raw(w http.ResponseWriter, r *http.Request, s *session) error {
	b, err := h.buildOf(r, s, store.RoleViewer)
	if err != nil {
		return err
	}
	j, step, _, err := logQuery(r, b)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s-%d-%s", b.Repo, b.Number, j.Name)
	if step >= 0 {
		name += fmt.Sprintf("-step%d", step+1)
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `inline; filename="`+name+`.log"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	bw := bufio.NewWriterSize(w, 64<<10)
	var after int64
	for {
		cs, err := h.Store.Logs(r.Context(), j.ID, after, 256)
		if err != nil {
			if after == 0 {
				return err // nothing sent yet: a proper error answer
			}
			return nil
		}
		for _, c := range cs {
			if step < 0 || c.Step == int(step) {
				if _, err := bw.Write(c.Data); err != nil {
					return nil // the client went away
				}
			}
			after = c.Seq
		}
		if len(cs) < 256 {
			break
		}
	}
	return bw.Flush()
}

// sse starts a Server-Sent Events answer.
func sse(w http.ResponseWriter) (http.Flusher, error) { return api.SSEHeaders(w) }

// send writes one event; data may hold newlines.
func send(w http.ResponseWriter, event, id, data string) {
	var b strings.Builder
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\n")
	if id != "" {
		b.WriteString("id: ")
		b.WriteString(id)
		b.WriteString("\n")
	}
	for _, line := range strings.Split(data, "\n") {
		b.WriteString("data: ")
		b.WriteString(strings.TrimRight(line, "\r"))
		b.WriteString("\n")
	}
	b.WriteString("\n")
	w.Write([]byte(b.String()))
}

// buildEvents streams what changes on a build page: its state (header,
// graph, steps) as HTML whenever the build changes, the new lines of the
// log it shows as HTML, and "end" once the build has finished and every
// line is out. An event's id is where the log stands, so a browser that
// reconnects (Last-Event-ID) resumes without losing or repeating lines.
func (h *Handler) buildEvents(w http.ResponseWriter, r *http.Request, s *session) error {
	b, err := h.buildOf(r, s, store.RoleViewer)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var j *store.Job
	step, after, lastStep := -1, int64(0), int64(-1)
	if q.Get("job") != "" {
		if j, step, _, err = logQuery(r, b); err != nil {
			return err
		}
		if after, err = intParam(q, "after", 0); err != nil {
			return err
		}
		if lastStep, err = intParam(q, "ls", -1); err != nil {
			return err
		}
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			a, l, _ := strings.Cut(id, ":")
			if n, err := strconv.ParseInt(a, 10, 64); err == nil && n >= 0 {
				after = n
			}
			if n, err := strconv.ParseInt(l, 10, 64); err == nil && n >= -1 {
				lastStep = n
			}
		}
	}
	msgs, stop := h.Broker.Subscribe()
	defer stop()
	fl, err := sse(w)
	if err != nil {
		return err
	}
	ctx := r.Context()
	var (
		a                     ansi
		lastState             string
		stateDirty, logsDirty = true, true
		ls                    = int(lastStep)
	)
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		if stateDirty {
			nb, err := h.Store.Build(ctx, b.ID)
			if err != nil {
				return nil
			}
			b = nb
			view := h.buildView(s, b, jobName(j), step)
			state, err := h.fragment("build", "state", view)
			if err != nil {
				return err
			}
			if state != lastState {
				send(w, "state", "", state)
				lastState = state
			}
		}
		finished := store.Finished(b.Status)
		if j != nil && (logsDirty || finished) {
			for _, jj := range b.Jobs {
				if jj.ID == j.ID {
					j = jj // its steps as they are now, for the headers
				}
			}
			for {
				cs, err := h.Store.Logs(ctx, j.ID, after, 200)
				if err != nil {
					return nil
				}
				var lines []logLine
				for _, c := range cs {
					if step < 0 || c.Step == step {
						lines = append(lines, splitChunk(c)...)
					}
					after = c.Seq
				}
				if len(lines) > 0 {
					var sb strings.Builder
					renderLines(&sb, j, lines, step < 0, &ls, &a)
					send(w, "log", fmt.Sprintf("%d:%d", after, ls), sb.String())
				}
				if len(cs) < 200 {
					break
				}
			}
		}
		if finished {
			send(w, "end", "", b.Status)
			fl.Flush()
			return nil
		}
		fl.Flush()
		stateDirty, logsDirty = false, false
		timer := time.NewTimer(5 * time.Second)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-keepalive.C:
				fmt.Fprint(w, ": keepalive\n\n")
				fl.Flush()
			case m := <-msgs:
				if m.BuildID != b.ID {
					continue
				}
				if m.Kind == "build" {
					stateDirty = true
				} else if j != nil && m.JobID == j.ID {
					logsDirty = true
				}
				if stateDirty || logsDirty {
					break wait
				}
			case <-timer.C:
				// A message missed (a slow reader loses them): look anyway.
				stateDirty, logsDirty = true, true
				break wait
			}
		}
		timer.Stop()
	}
}

func jobName(j *store.Job) string {
	if j == nil {
		return ""
	}
	return j.Name
}

// events streams a small event for every change of a build the user may
// see (of one repo with ?repo=): the dashboard and repo pages reload
// their content on it.
func (h *Handler) events(w http.ResponseWriter, r *http.Request, s *session) error {
	repo := r.URL.Query().Get("repo")
	msgs, stop := h.Broker.Subscribe()
	defer stop()
	fl, err := sse(w)
	if err != nil {
		return err
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case m := <-msgs:
			b, ok := m.Snapshot.(api.Build)
			if m.Kind != "build" || !ok || !s.id.Can(store.RoleViewer, b.Repo) || repo != "" && b.Repo != repo {
				continue
			}
			data, _ := json.Marshal(map[string]any{"id": b.ID, "repo": b.Repo, "number": b.Number, "status": b.Status})
			send(w, "build", "", string(data))
			fl.Flush()
		}
	}
}
