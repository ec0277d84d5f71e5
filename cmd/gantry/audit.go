package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/audit"
)

func auditCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "verify" {
		return auditVerifyCmd(args[1:], stdout, stderr)
	}
	fs := newFlagSet("audit", "audit [--actor A] [--action X] [--object O] [--since T] [--limit N] | audit verify [--anchor SEQ:HASH]",
		`Lists the audit log, newest first: every act that changed something on the
server (repos, builds triggered, cancelled and retried, users, tokens,
groups, roles, locks, and builds that webhooks started), with who did it,
from which address, and the reason they gave with --reason. Filters match
exactly: --actor alice,
--action build.cancel, --object repo:acme/web.

'gantry audit verify' checks that no entry was altered or removed; run
'gantry audit verify --help'. Both need an admin token.`, stdout, stderr)
	cf := addClientFlags(fs)
	actorF := fs.String("actor", "", "only acts of this `actor`, such as alice or forge:github")
	action := fs.String("action", "", "only this `action`, such as repo.add or build.cancel")
	object := fs.String("object", "", "only acts on this `object`, such as repo:acme/web, build:42 or lock:deploy")
	since := fs.String("since", "", "only acts at or after `T`: an RFC 3339 time (2025-01-02T15:04:05Z) or a duration ago (90m, 24h, 7d)")
	limit := fs.Int("limit", 50, "at most `N` entries (1 to 1000)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gantry audit: unexpected argument %q (the one subcommand, verify, comes first: gantry audit verify)\n", fs.Arg(0))
		return exitUsage
	}
	q := api.AuditQuery{Actor: *actorF, Action: *action, Object: *object, Limit: *limit}
	if *limit < 1 || *limit > 1000 {
		fmt.Fprintf(stderr, "gantry audit: --limit %d: want 1 to 1000\n", *limit)
		return exitUsage
	}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "gantry audit: --since: %v\n", err)
			return exitUsage
		}
		q.Since = t
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	entries, err := c.Audit(context.Background(), q)
	if err != nil {
		return fail(stderr, "audit", err)
	}
	if cf.json() {
		printJSON(stdout, entries)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tADDRESS\tACTION\tOBJECT\tREASON\tDETAIL")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Local().Format("2006-01-02 15:04:05"),
			e.Actor, e.Address, e.Action, e.Object, orDash(e.Reason), orDash(detailText(e.Detail)))
	}
	tw.Flush()
	return exitOK
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// detailText is an entry's detail as key=value pairs in key order.
func detailText(d map[string]string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		v := d[k]
		if v == "" || strings.ContainsAny(v, " \t\"") {
			v = strconv.Quote(v)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// parseSince reads --since: an RFC 3339 time, or a duration before now
// as time.ParseDuration takes it or a whole number of days ("7d").
func parseSince(s string, now time.Time) (time.Time, error) { return parseWhen(s, now, -1) }

// parseWhen reads a time: an RFC 3339 one, or a duration (as
// time.ParseDuration takes it, or a whole number of days, "7d") before now
// (sign -1) or after now (sign 1).
func parseWhen(s string, now time.Time, sign int) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > 100*366 {
			return time.Time{}, fmt.Errorf("%q: want a whole number of days from 0 to 36600 before d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2025-01-02T15:04:05Z) or a duration such as 90m, 24h or 7d", s)
		}
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration must not be negative", s)
		}
	}
	return now.Add(time.Duration(sign) * d), nil
}

func auditVerifyCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit verify", "audit verify [--anchor SEQ:HASH]",
		`Checks the audit log's hash chain from its first entry: each entry must
match its hash and name the hash of the one before, and no sequence number
may be missing. Prints how many entries were checked and the newest one as
SEQ:HASH, and exits 0; or names the first entry that was altered or removed,
and exits 1.

The chain alone cannot show that the newest entries were removed. Keep the
SEQ:HASH a run prints, and pass it to a later run as --anchor: that run
then also checks the entry is still there with the same hash.`, stdout, stderr)
	cf := addClientFlags(fs)
	anchor := fs.String("anchor", "", "`SEQ:HASH` an earlier run printed: check that entry is unchanged")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gantry audit verify: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *anchor != "" {
		if _, err := audit.ParseAnchor(*anchor); err != nil {
			fmt.Fprintf(stderr, "gantry audit verify: --anchor: %v\n", err)
			return exitUsage
		}
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	v, err := c.VerifyAudit(context.Background(), *anchor)
	if err != nil {
		return fail(stderr, "audit verify", err)
	}
	code := exitOK
	if !v.OK {
		code = exitFailed
	}
	if cf.json() {
		printJSON(stdout, v)
		return code
	}
	if v.OK {
		if v.HeadSeq == 0 {
			fmt.Fprintln(stdout, "audit log intact: it is empty")
		} else {
			fmt.Fprintf(stdout, "audit log intact: %d entries checked; newest %d:%s\n", v.Checked, v.HeadSeq, v.HeadHash)
		}
		return code
	}
	fmt.Fprintf(stdout, "audit log BROKEN at entry %d: %s\n", v.Problem.Seq, v.Problem.Message)
	fmt.Fprintf(stdout, "%d entries before it are intact", v.Checked)
	if v.HeadSeq > 0 {
		fmt.Fprintf(stdout, "; the last of them is %d:%s", v.HeadSeq, v.HeadHash)
	}
	fmt.Fprintln(stdout)
	return code
}
