package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Targets the product promises.
const (
	targetFixedMS   = 5.0  // ms above sh -c 'echo hi'
	targetStepMS    = 0.3  // ms per step beyond starting its shell
	targetLogRatio  = 2.0  // times seq | awk
	targetMemoryMiB = 20.0 // max RSS of the 100-step pipeline
)

type verdict string

const (
	pass verdict = "PASS"
	fail verdict = "FAIL"
	info verdict = "info"
)

// row is one line of the report's table.
type row struct {
	measure, gantry, baseline, diff, target string
	verdict                                 verdict
}

func check(ok bool) verdict {
	if ok {
		return pass
	}
	return fail
}

// rows turns the samples into the report's table. Every difference and
// ratio is taken round by round, between runs made back to back, and then
// summarized by its median: drift between rounds cancels out.
func (r *results) rows() []row {
	var rows []row

	gFix, bFix := r.walls(fixedGantry), r.walls(fixedBase)
	fixDiff := pairwise(gFix, bFix, func(g, b float64) float64 { return g - b })
	rows = append(rows, row{
		measure:  "a. fixed cost: `gantry run`, 1 step `echo hi`",
		gantry:   fmtMS(gFix, 2),
		baseline: fmtMS(bFix, 2) + " `sh -c 'echo hi'`",
		diff:     fmt.Sprintf("%+.2f ms (p90 %+.2f)", median(fixDiff), percentile(fixDiff, 90)),
		target:   fmt.Sprintf("≤ +%g ms", targetFixedMS),
		verdict:  check(median(fixDiff) <= targetFixedMS),
	})

	const extra = 99 // steps in the 100-step pipeline beyond the 1-step one
	g1, g100 := r.walls(step1Gantry), r.walls(step100Gantry)
	b1, b100 := r.walls(step1Base), r.walls(step100Base)
	perStep := func(one, hundred []float64) []float64 {
		return pairwise(hundred, one, func(h, o float64) float64 { return (h - o) / extra })
	}
	gStep, bStep := perStep(g1, g100), perStep(b1, b100)
	over := pairwise(gStep, bStep, func(g, b float64) float64 { return g - b })
	rows = append(rows, row{
		measure:  "b. per sequential step beyond starting its shell (100 × `true`)",
		gantry:   fmtMS(gStep, 3) + "/step",
		baseline: fmtMS(bStep, 3) + "/step, Go loop of `sh -c true`",
		diff:     fmt.Sprintf("%+.3f ms/step (p90 %+.3f)", median(over), percentile(over, 90)),
		target:   fmt.Sprintf("≤ +%g ms/step", targetStepMS),
		verdict:  check(median(over) <= targetStepMS),
	})

	gLog, bLog := r.walls(logGantry), r.walls(logBase)
	ratio := pairwise(gLog, bLog, func(g, b float64) float64 { return g / b })
	rows = append(rows, row{
		measure:  fmt.Sprintf("c. log throughput: %s lines to a file", thousands(logLines)),
		gantry:   fmtMS(gLog, 1),
		baseline: fmtMS(bLog, 1) + " `seq | awk` prefixing",
		diff:     fmt.Sprintf("%.2fx (p90 %.2fx)", median(ratio), percentile(ratio, 90)),
		target:   fmt.Sprintf("≤ %gx", targetLogRatio),
		verdict:  check(median(ratio) <= targetLogRatio),
	})

	got := fmt.Sprintf("all %d files right", r.logChecked)
	if r.logErr != nil {
		got = "wrong: " + r.logErr.Error()
	}
	base := "right"
	if r.baseErr != nil {
		base = "wrong: " + r.baseErr.Error()
	}
	rows = append(rows, row{
		measure:  fmt.Sprintf("c. log output holds the %s prefixed lines in order", thousands(logLines)),
		gantry:   got,
		baseline: base,
		diff:     "",
		target:   "exact",
		verdict:  check(r.logErr == nil),
	})

	gMem, bMem := r.rss(step100Gantry), r.rss(step1Base)
	memVerdict := info
	if len(gMem) > 0 {
		memVerdict = check(slices.Max(gMem) <= targetMemoryMiB)
	}
	rows = append(rows, row{
		measure:  "d. peak memory (max RSS), 100-step pipeline",
		gantry:   fmtMiB(gMem),
		baseline: fmtMiB(bMem) + " `sh -c true`",
		diff:     "",
		target:   fmt.Sprintf("≤ %g MiB (largest run)", targetMemoryMiB),
		verdict:  memVerdict,
	})

	gMem, bMem = r.rss(logGantry), r.rss(logBase)
	rows = append(rows, row{
		measure:  fmt.Sprintf("d. peak memory (max RSS), %s-line pipeline", thousands(logLines)),
		gantry:   fmtMiB(gMem),
		baseline: fmtMiB(bMem) + " `seq | awk`",
		diff:     "",
		target:   "reported",
		verdict:  info,
	})
	return rows
}

// writeReport writes the table and how to read it.
func writeReport(w io.Writer, rows []row, n int, machine string) {
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	fmt.Fprintln(w, "| measure | gantry | baseline | difference/ratio | target | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n",
			cell(r.measure), cell(r.gantry), cell(r.baseline), cell(r.diff), cell(r.target), r.verdict)
	}
	fmt.Fprintf(w, `
Machine: %s. %d measured rounds after one warm-up round.

- Times are wall-clock, from just before the process is started (and its
  output file created) to just after it has been waited for: median, with the
  90th percentile in parentheses. Each round runs every baseline and its
  gantry run back to back, alternating which goes first, and each
  difference or ratio is taken within a round and then its median reported.
- b: per round, gantry = (G100 − G1) / 99 and baseline = (B100 − B1) / 99,
  where G100 and G1 are `+"`gantry run`"+` of 100 and of 1 `+"`true`"+` steps and
  B100 and B1 are 100 and 1 runs of `+"`sh -c true`"+` from a Go loop
  (exec.Command(...).Run(), Go's fork and exec, as gantry's). Subtracting the
  1-step figures removes gantry's start-up and the loop's; subtracting the
  baseline removes starting a shell. What is left, difference =
  ((G100 − G1) − (B100 − B1)) / 99, is what gantry adds to each step: its
  events and output, the pipe, environment, PATH lookup and process group.
- c: gantry writes every step line as "%s<line>", as the baseline's awk
  does; every gantry run's file is checked (outside the timing) to hold
  exactly lines 1 to %s with that prefix, in order.
- Every process is started, timed and waited for by a small launcher (this
  program re-run), not by the harness itself; see d.
- d: max RSS from the rusage of the waited-for process (ProcessState.SysUsage):
  the largest run, with the median of all runs. On Linux it also covers the
  children gantry waited for (the step shells). A child's max RSS never
  reads below the peak RSS of the process that started it (Go starts
  children with vfork, and exec folds the parent's high-water mark into the
  child's), which is why the launcher starts them: the `+"`sh -c true`"+`
  baseline shows that floor, so a baseline near it means "at most this".
`, machine, n, logPrefix, thousands(logLines))
}

// pairwise applies f to the i-th elements of a and b.
func pairwise(a, b []float64, f func(a, b float64) float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = f(a[i], b[i])
	}
	return out
}

// median is the middle value of xs, NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// percentile is the nearest-rank p-th percentile of xs, NaN for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// fmtMS shows a series' median and 90th percentile in milliseconds.
func fmtMS(xs []float64, prec int) string {
	return fmt.Sprintf("%.*f ms (p90 %.*f)", prec, median(xs), prec, percentile(xs, 90))
}

// fmtMiB shows a series' largest value and median in MiB.
func fmtMiB(xs []float64) string {
	if len(xs) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB max (median %.1f)", slices.Max(xs), median(xs))
}

// thousands writes n with commas: 1000000 -> 1,000,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
