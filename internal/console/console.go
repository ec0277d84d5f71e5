// Package console renders a run's events for a person at a terminal (Text)
// or for a script (JSON). It only formats: the events arrive already masked,
// one at a time, from the engine.
package console

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantry-ci/gantry/internal/engine"
)

// ANSI colors for job prefixes, cycled in the order jobs first speak.
var prefixColors = []string{"36", "35", "34", "33", "32", "96", "95", "94"}

// Text writes events as lines prefixed with [job/step], colored when Color
// is set. Output is buffered and flushed at the end of every event, so lines
// appear as soon as a step prints them without one write per line.
type Text struct {
	w      *bufio.Writer
	color  bool
	colors map[string]string
	// prefix caches "[job/step] " per job and step index.
	prefix map[prefixKey][]byte
}

type prefixKey struct {
	job  string
	step int
}

// NewText returns a Text writing to w.
func NewText(w io.Writer, color bool) *Text {
	return &Text{w: bufio.NewWriterSize(w, 64<<10), color: color, colors: map[string]string{}, prefix: map[prefixKey][]byte{}}
}

func (t *Text) paint(code, s string) string {
	if !t.color || code == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (t *Text) jobColor(job string) string {
	if !t.color {
		return ""
	}
	c, ok := t.colors[job]
	if !ok {
		c = prefixColors[len(t.colors)%len(prefixColors)]
		t.colors[job] = c
	}
	return c
}

func statusColor(s engine.Status) string {
	switch s {
	case engine.Success:
		return "32"
	case engine.Failure, engine.Error:
		return "31"
	case engine.Cancelled:
		return "33"
	case engine.Skipped:
		return "90"
	}
	return ""
}

// Event renders one event.
func (t *Text) Event(ev engine.Event) {
	switch ev.Type {
	case engine.Log:
		t.log(ev)
	case engine.JobStarted:
		fmt.Fprintf(t.w, "%s %s\n", t.paint(t.jobColor(ev.Job), "["+ev.Job+"]"), t.paint("1", "job started"))
	case engine.JobFinished:
		msg := fmt.Sprintf("job %s", ev.Status)
		if ev.Duration > 0 {
			msg += " in " + Duration(ev.Duration)
		}
		if ev.Reason != "" {
			msg += ": " + ev.Reason
		}
		fmt.Fprintf(t.w, "%s %s\n", t.paint(t.jobColor(ev.Job), "["+ev.Job+"]"), t.paint(statusColor(ev.Status), msg))
	case engine.StepStarted:
		msg := "$ " + ev.Step
		if ev.Attempt > 1 {
			msg += fmt.Sprintf("  (attempt %d of %d)", ev.Attempt, ev.MaxAttempts)
		}
		fmt.Fprintf(t.w, "%s %s\n", t.paint(t.jobColor(ev.Job), "["+ev.Job+"]"), t.paint("1", msg))
	case engine.StepFinished:
		mark := map[engine.Status]string{engine.Success: "✓", engine.Failure: "✗", engine.Error: "✗", engine.Cancelled: "■", engine.Skipped: "–"}[ev.Status]
		msg := fmt.Sprintf("%s %s", mark, ev.Step)
		switch {
		case ev.Status == engine.Skipped:
			msg += " skipped: " + ev.Reason
		case ev.Reason != "":
			msg += " " + string(ev.Status) + ": " + ev.Reason
		}
		if ev.Duration > 0 {
			msg += " (" + Duration(ev.Duration) + ")"
		}
		if ev.Status == engine.Failure && ev.Attempt < ev.MaxAttempts {
			msg += ", retrying"
		}
		fmt.Fprintf(t.w, "%s %s\n", t.paint(t.jobColor(ev.Job), "["+ev.Job+"]"), t.paint(statusColor(ev.Status), msg))
	}
	t.w.Flush()
}

func (t *Text) log(ev engine.Event) {
	key := prefixKey{ev.Job, ev.StepIndex}
	p, ok := t.prefix[key]
	if !ok {
		p = []byte(t.paint(t.jobColor(ev.Job), "["+ev.Job+"/"+ev.Step+"]") + " ")
		t.prefix[key] = p
	}
	data := ev.Data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			i = len(data) - 1
		}
		t.w.Write(p)
		t.w.Write(data[:i+1])
		data = data[i+1:]
	}
}

// Summary writes the closing table: every job with its status and duration.
func (t *Text) Summary(res *engine.Result) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATUS\tDURATION\t")
	for _, j := range res.Jobs {
		d := "-"
		if j.Duration > 0 {
			d = Duration(j.Duration)
		}
		// Pad before painting so escape codes do not upset the columns.
		st := t.paint(statusColor(j.Status), fmt.Sprintf("%-9s", j.Status))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", j.Name, st, d, j.Reason)
	}
	tw.Flush()
	t.w.WriteByte('\n')
	for _, line := range bytes.SplitAfter(buf.Bytes(), []byte("\n")) {
		t.w.Write(bytes.TrimRight(line, " \n"))
		if len(line) > 0 {
			t.w.WriteByte('\n')
		}
	}
	fmt.Fprintf(t.w, "\n%s in %s\n", t.paint(statusColor(res.Status), "run "+string(res.Status)), Duration(res.Duration))
	t.w.Flush()
}

// Duration formats a duration for people: 850ms, 4.2s, 3m05s.
func Duration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// JSON writes one JSON object per line for every event, and for log events
// one object per log line. Its field names are a contract with scripts.
type JSON struct {
	w   *bufio.Writer
	enc *json.Encoder
}

// NewJSON returns a JSON writing to w.
func NewJSON(w io.Writer) *JSON {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &JSON{w: bw, enc: json.NewEncoder(bw)}
}

// JSONEvent is the shape of each line of `gantry run --output json`.
type JSONEvent struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"time"`
	Job        string    `json:"job,omitempty"`
	Step       string    `json:"step,omitempty"`
	StepIndex  *int      `json:"step_index,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	Line       *string   `json:"line,omitempty"`
	Status     string    `json:"status,omitempty"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	DurationMS *float64  `json:"duration_ms,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Jobs       []JSONJob `json:"jobs,omitempty"`
}

// JSONJob is a job in the closing run.finished line.
type JSONJob struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	DurationMS float64    `json:"duration_ms"`
	Steps      []JSONStep `json:"steps"`
}

// JSONStep is a step in the closing run.finished line.
type JSONStep struct {
	Name       string  `json:"name"`
	Status     string  `json:"status"`
	ExitCode   int     `json:"exit_code"`
	Attempts   int     `json:"attempts"`
	DurationMS float64 `json:"duration_ms"`
	Reason     string  `json:"reason,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Event writes one event.
func (j *JSON) Event(ev engine.Event) {
	out := JSONEvent{Type: string(ev.Type), Time: ev.Time.UTC(), Job: ev.Job, Step: ev.Step, Attempt: ev.Attempt, Status: string(ev.Status), Reason: ev.Reason}
	switch ev.Type {
	case engine.StepStarted, engine.StepFinished, engine.Log:
		i := ev.StepIndex
		out.StepIndex = &i
	}
	switch ev.Type {
	case engine.StepFinished:
		c := ev.ExitCode
		out.ExitCode = &c
		d := ms(ev.Duration)
		out.DurationMS = &d
	case engine.JobFinished:
		d := ms(ev.Duration)
		out.DurationMS = &d
	case engine.Log:
		for _, line := range strings.SplitAfter(string(ev.Data), "\n") {
			if line == "" {
				continue
			}
			l := strings.TrimSuffix(line, "\n")
			out.Line = &l
			j.enc.Encode(out)
		}
		j.w.Flush()
		return
	}
	j.enc.Encode(out)
	j.w.Flush()
}

// Summary writes the closing run.finished line.
func (j *JSON) Summary(res *engine.Result) {
	d := ms(res.Duration)
	out := JSONEvent{Type: "run.finished", Time: time.Now().UTC(), Status: string(res.Status), DurationMS: &d}
	for _, jr := range res.Jobs {
		jj := JSONJob{Name: jr.Name, Status: string(jr.Status), Reason: jr.Reason, DurationMS: ms(jr.Duration), Steps: []JSONStep{}}
		for _, s := range jr.Steps {
			jj.Steps = append(jj.Steps, JSONStep{Name: s.Name, Status: string(s.Status), ExitCode: s.ExitCode, Attempts: s.Attempts, DurationMS: ms(s.Duration), Reason: s.Reason})
		}
		out.Jobs = append(out.Jobs, jj)
	}
	j.enc.Encode(out)
	j.w.Flush()
}
