package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/issue"
	"github.com/gantry-ci/gantry/internal/notify"
)

const hookAbout = `A hook is a URL that receives build and deployment events as they happen, from every server, retried with backoff
when it does not answer 2xx.

Events: ` + "{{events}}" + `.
--events takes names and globs (build.*, deployment.*, *), comma-separated or
repeated.

With --format json (the default) each delivery is a JSON object
{"event", "created_at", "repo", "build", "previous"} (deployment events:
{"event", "created_at", "repo", "deployment"}, see docs/notifications.md) with the headers
Gantry-Event (the event), Gantry-Delivery (the same ID on a retry) and
Gantry-Signature: sha256=HEX, the HMAC-SHA256 of the body keyed with the hook's
secret. With --format slack each delivery is a chat message {"text": ...} for a
Slack, Mattermost or Zulip (Slack-compatible) incoming webhook; such a URL is
a secret in itself and is never shown whole again.`

func hookCmd(args []string, stdout, stderr io.Writer) int {
	usage := "gantry hook add URL --events E[,E...] [--repo R] [--branch B] [--environment E] [--format json|slack] [--secret-stdin] | list | rm ID"
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return exitUsage
	}
	about := strings.Replace(hookAbout, "{{events}}", strings.Join(notify.Events, ", "), 1)
	sub, args := args[0], args[1:]
	ctx := context.Background()
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, "usage: "+usage+"\n\n"+about+"\n\nRun 'gantry hook add --help' (or list, rm) for a subcommand's flags.")
		return exitOK
	case "add":
		fs := newFlagSet("hook add", "hook add URL --events E[,E...] [--repo OWNER/NAME] [--branch GLOB] [--environment GLOB] [--format json|slack] [--secret-stdin]",
			"Subscribes URL to events. Prints the hook's secret once, unless --secret-stdin gives it.\n\n"+about, stdout, stderr)
		cf := addClientFlags(fs)
		var events listFlag
		fs.Var(&events, "events", "`events` to send: names or globs, comma-separated (build.finished,deployment.*)")
		repo := fs.String("repo", "", "only events of this `repository` (default: every repository)")
		branch := fs.String("branch", "", "only builds, and releases' deployments, of branches that match this `glob` (main, release/*)")
		environment := fs.String("environment", "", "only deployments (and their builds) to environments that match this `glob` (production, prod-*)")
		format := fs.String("format", "json", "`format`: json (signed events) or slack (chat messages)")
		secretStdin := fs.Bool("secret-stdin", false, "read the hook's secret from the first line of stdin instead of making one")
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one URL", stderr) {
			return exitUsage
		}
		var names []string
		for _, e := range events {
			names = append(names, strings.Split(e, ",")...)
		}
		if _, err := notify.ParseEvents(names); err != nil {
			fmt.Fprintf(stderr, "gantry hook add: --events: %v\n", err)
			return exitUsage
		}
		var secret string
		if *secretStdin {
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			secret = strings.TrimSpace(line)
			if secret == "" {
				fmt.Fprintf(stderr, "gantry hook add: --secret-stdin: no secret on stdin (%v)\n", err)
				return exitUsage
			}
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		h, err := c.AddHook(ctx, api.NewHook{URL: fs.Arg(0), Events: names, Repo: *repo, Branch: *branch, Environment: *environment, Format: *format, Secret: secret})
		if err != nil {
			return fail(stderr, "hook add", err)
		}
		if cf.json() {
			if *secretStdin {
				h.Secret = "" // the caller has it
			}
			printJSON(stdout, h)
			return exitOK
		}
		fmt.Fprintf(stdout, "added hook %d: %s gets %s\n", h.ID, h.URL, strings.Join(h.Events, ", "))
		if !*secretStdin {
			fmt.Fprintf(stdout, "\nIts secret signs every delivery (Gantry-Signature). It is shown only this once; store it now:\n\n    %s\n\n", h.Secret)
		}
		return exitOK
	case "list", "ls":
		return listCmd(newFlagSet("hook list", "hook list", "Lists hooks, oldest first. Secrets are not shown.", stdout, stderr),
			args, stdout, stderr, (*api.Client).Hooks, "ID\tURL\tEVENTS\tREPO\tBRANCH\tENVIRONMENT\tFORMAT", func(w io.Writer, h api.Hook) {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.URL, strings.Join(h.Events, ","), orDash(h.Repo), orDash(h.Branch),
					orDash(h.Environment), h.Format)
			})
	case "rm", "remove":
		fs := newFlagSet("hook rm", "hook rm ID", "Removes a hook; what it was still owed is not sent.", stdout, stderr)
		cf := addClientFlags(fs)
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one hook ID", stderr) {
			return exitUsage
		}
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil || id < 1 {
			fmt.Fprintf(stderr, "gantry hook rm: hook ID %q: want a positive number\n", fs.Arg(0))
			return exitUsage
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		if err := c.DeleteHook(ctx, id); err != nil {
			return fail(stderr, "hook rm", err)
		}
		fmt.Fprintf(stdout, "removed hook %d\n", id)
		return exitOK
	}
	fmt.Fprintf(stderr, "gantry hook: unknown subcommand %q\nusage: %s\n", sub, usage)
	return exitUsage
}

func deliveriesCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("deliveries", "deliveries [--repo OWNER/NAME] [--state S] [--kind K] [--build ID] [--limit N]",
		`Lists deliveries, newest first: the commit statuses posted to forges (kind
status, event gantry or gantry/JOB), the events posted to hooks (kind hook),
and the deployment statuses posted to GitHub's Deployments API (kind
deployment, event deployment/ENV:STATE), with how each went. A delivery is pending until it is sent, and while it waits
for a retry (then NEXT says when); delivered once the receiver answered 2xx;
failed when the receiver refused it or the retries ran out (ERROR says why);
superseded when a newer status of the same commit and context replaced it
before it was sent; skipped when nothing is sent (a repo without forge
credentials: recorded once).`, stdout, stderr)
	cf := addClientFlags(fs)
	repo := fs.String("repo", "", "only this `repository`")
	state := fs.String("state", "", "only this `state`: "+strings.Join(api.DeliveryStates, ", "))
	kind := fs.String("kind", "", "only this `kind`: status, hook or deployment")
	build := fs.Int64("build", 0, "only deliveries about this build `ID`")
	limit := fs.Int("limit", 50, "at most `N` deliveries")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gantry deliveries: unexpected argument %q (use --repo)\n", fs.Arg(0))
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	ds, err := c.Deliveries(context.Background(), *repo, *state, *kind, *build, *limit)
	if err != nil {
		return fail(stderr, "deliveries", err)
	}
	if cf.json() {
		printJSON(stdout, ds)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREPO\tBUILD\tKIND\tEVENT\tSTATE\tTRIES\tLAST\tWHEN\tERROR")
	for _, d := range ds {
		last, when, build := "-", "-", "-"
		if d.LastStatus != 0 {
			last = strconv.Itoa(d.LastStatus)
		}
		if d.BuildID != 0 {
			build = strconv.FormatInt(d.BuildID, 10)
		}
		switch {
		case d.NextAttemptAt != nil:
			when = "next " + d.NextAttemptAt.Local().Format("15:04:05")
		case d.FinishedAt != nil:
			when = d.FinishedAt.Local().Format(time.DateTime)
		}
		errText := strings.ReplaceAll(d.LastError, "\t", " ")
		if r := []rune(errText); len(r) > 100 {
			errText = string(r[:99]) + "…"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, orDash(d.Repo), build, d.Kind, d.Event, d.State,
			d.Attempts, last, when, orDash(errText))
	}
	tw.Flush()
	return exitOK
}

func issueCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("issue", "issue KEY [--limit N]",
		`Answers where an issue's change is: the builds that name an issue key, newest
first (a tracker key such as ABC-123 (Jira, YouTrack, Linear) or a forge
reference such as #123, found in the build's branch name, pull request title or
commit message when it was built); the releases that ship it (a commit since the
previous release of its branch names it); and the environments that run it now
(their live release is one of those, or a newer release of the same branch).
Quote #123 for the shell. With --output json: {"key", "builds", "releases",
"running"}.`, stdout, stderr)
	cf := addClientFlags(fs)
	limit := fs.Int("limit", 50, "at most `N` builds")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, "one issue KEY", stderr) {
		return exitUsage
	}
	key := fs.Arg(0)
	if !issue.Valid(key) {
		fmt.Fprintf(stderr, "gantry issue: %q is not an issue key: want one such as ABC-123 or #123\n", key)
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	builds, err := c.IssueBuilds(context.Background(), key, *limit)
	if err != nil {
		return fail(stderr, "issue", err)
	}
	rels, err := c.IssueReleases(context.Background(), key)
	if err != nil {
		return fail(stderr, "issue", err)
	}
	if cf.json() {
		printJSON(stdout, struct {
			Key string `json:"key"`
			api.IssueReleases
			Builds []api.Build `json:"builds"`
		}{key, rels, builds})
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(builds) == 0 {
		fmt.Fprintf(tw, "no build names %s\n", key)
	} else {
		fmt.Fprintln(tw, "ID\tREPO\t#\tSTATUS\tBRANCH\tCOMMIT\tCREATED")
	}
	for _, b := range builds {
		ref := b.Branch
		if b.Tag != "" {
			ref = b.Tag
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", b.ID, b.Repo, b.Number, b.Status, ref, shortSHA(b.Commit),
			b.CreatedAt.Local().Format(time.DateTime))
	}
	tw.Flush()
	if len(rels.Releases) == 0 {
		fmt.Fprintf(stdout, "no release ships %s\n", key)
		return exitOK
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(tw, "REPO\tRELEASE\tBUILD\tCOMMIT\tCREATED")
	for _, r := range rels.Releases {
		fmt.Fprintf(tw, "%s\t%s\t%d (#%d)\t%s\t%s\n", r.Repo, r.Version, r.BuildID, r.BuildNumber, shortSHA(r.Commit),
			r.CreatedAt.Local().Format(time.DateTime))
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	if len(rels.Running) == 0 {
		fmt.Fprintf(stdout, "no environment runs %s yet\n", key)
		return exitOK
	}
	fmt.Fprintln(tw, "REPO\tENVIRONMENT\tRUNS\tSINCE")
	for _, r := range rels.Running {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Repo, r.Environment, r.Release, r.Since.Local().Format(time.DateTime))
	}
	tw.Flush()
	return exitOK
}
