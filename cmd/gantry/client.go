package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/console"
)

// clientFlags are the flags every command that talks to a server takes.
type clientFlags struct {
	server, token, output, reason *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	def := os.Getenv("GANTRY_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	return clientFlags{
		server: fs.String("server", def, "server `URL` (env GANTRY_SERVER)"),
		token:  fs.String("token", "", "API `token` (env GANTRY_TOKEN)"),
		output: fs.String("output", "text", "output `format`: text or json"),
		reason: fs.String("reason", "", "why you do this, in one line of `text`: the audit log records it with each change (sent as the Gantry-Reason header)"),
	}
}

func (c clientFlags) client(stderr io.Writer) (*api.Client, bool) {
	token := *c.token
	if token == "" {
		token = os.Getenv("GANTRY_TOKEN")
	}
	if *c.output != "text" && *c.output != "json" {
		fmt.Fprintf(stderr, "--output must be text or json, not %q\n", *c.output)
		return nil, false
	}
	if token == "" {
		fmt.Fprintln(stderr, "no API token: set GANTRY_TOKEN or pass --token")
		return nil, false
	}
	if err := api.CheckReason(*c.reason); err != nil {
		fmt.Fprintf(stderr, "--reason: %v\n", err)
		return nil, false
	}
	return &api.Client{Server: *c.server, Token: token, Reason: *c.reason}, true
}

func (c clientFlags) json() bool { return *c.output == "json" }

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// fail prints a client error and returns its exit code.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "gantry %s: %v\n", cmd, err)
	return exitFailed
}

// listCmd runs a command that fetches a listing from the server and prints
// it as JSON with --output json, else as the table row writes.
func listCmd[T any](fs *flag.FlagSet, args []string, stdout, stderr io.Writer,
	fetch func(*api.Client, context.Context) ([]T, error), header string, row func(io.Writer, T)) int {
	cf := addClientFlags(fs)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	items, err := fetch(c, context.Background())
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	if cf.json() {
		printJSON(stdout, items)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		row(tw, it)
	}
	tw.Flush()
	return exitOK
}

func needArgs(fs *flag.FlagSet, n int, what string, stderr io.Writer) bool {
	if fs.NArg() != n {
		fmt.Fprintf(stderr, "gantry %s: want %s\n", fs.Name(), what)
		return false
	}
	return true
}

func parseID(s string, stderr io.Writer, cmd string) (int64, bool) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id < 1 {
		fmt.Fprintf(stderr, "gantry %s: build ID %q: want a positive number\n", cmd, s)
		return 0, false
	}
	return id, true
}

func repoCmd(args []string, stdout, stderr io.Writer) int {
	usage := "gantry repo add OWNER/NAME --url URL --webhook-secret SECRET [--forge F] [--api-url URL] | set OWNER/NAME [--url URL] [--webhook-secret SECRET] ... | list | rm OWNER/NAME"
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	ctx := context.Background()
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, "usage: "+usage+"\n\nRun 'gantry repo add --help' (or set, list, rm) for a subcommand's flags.")
		return exitOK
	case "add":
		fs := newFlagSet("repo add", "repo add OWNER/NAME --url GIT_URL --webhook-secret SECRET [--forge F] [--api-url URL]",
			`Registers a repository. Point the forge's webhook at SERVER/hooks/FORGE with the same secret.

The server first asks the repository at the URL for its default branch, as
builds will fetch it: when it cannot (a wrong URL, missing credentials, the
forge down), the repository is registered all the same and a warning says
why, since every build of it would fail until that is fixed.

Commit statuses go to the forge's API, whose URL follows from the clone URL
(github.com: https://api.github.com; GitHub Enterprise: HOST/api/v3; Gitea and
Forgejo: HOST/api/v1; GitLab: HOST/api/v4; bitbucket.org:
https://api.bitbucket.org/2.0); --api-url sets it when it does not (an ssh
clone URL of a self-hosted forge, a local path, a proxy).`, stdout, stderr)
		cf := addClientFlags(fs)
		rf := addRepoFlags(fs, "github", " (default: the repository's own, as the server finds it at the URL; else main)", " (default: from the clone URL)")
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one OWNER/NAME", stderr) {
			return exitUsage
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		r, err := c.AddRepo(ctx, api.NewRepo{Name: fs.Arg(0), CloneURL: *rf.url, WebhookSecret: *rf.secret, Forge: *rf.forge, DefaultBranch: *rf.branch, APIURL: *rf.apiURL})
		if err != nil {
			return fail(stderr, "repo add", err)
		}
		if cf.json() {
			printJSON(stdout, r)
		} else {
			fmt.Fprintf(stdout, "added %s (%s, default branch %s): point its webhook at %s/hooks/%s\n", r.Name, r.Forge, r.DefaultBranch, strings.TrimSuffix(*cf.server, "/"), r.Forge)
		}
		if r.Warning != "" {
			fmt.Fprintf(stderr, "gantry repo add: warning: %s\n", r.Warning)
		}
		return exitOK
	case "list", "ls":
		return listCmd(newFlagSet("repo list", "repo list", "Lists repositories.", stdout, stderr), args, stdout, stderr,
			(*api.Client).Repos, "REPO\tFORGE\tDEFAULT BRANCH\tURL", func(w io.Writer, r api.Repo) {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Name, r.Forge, r.DefaultBranch, r.CloneURL)
			})
	case "rm", "remove":
		fs := newFlagSet("repo rm", "repo rm OWNER/NAME", "Removes a repository with its builds and logs.", stdout, stderr)
		cf := addClientFlags(fs)
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one OWNER/NAME", stderr) {
			return exitUsage
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		if err := c.DeleteRepo(ctx, fs.Arg(0)); err != nil {
			return fail(stderr, "repo rm", err)
		}
		fmt.Fprintf(stdout, "removed %s\n", fs.Arg(0))
		return exitOK
	case "set":
		return repoSetCmd(ctx, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "gantry repo: unknown subcommand %q\nusage: %s\n", sub, usage)
	return exitUsage
}

// repoFlags are the settings of a repository that repo add and repo set
// take.
type repoFlags struct{ url, secret, forge, branch, apiURL *string }

func addRepoFlags(fs *flag.FlagSet, forge, branchDefault, apiDefault string) repoFlags {
	return repoFlags{
		url:    fs.String("url", "", "git clone `URL` agents fetch from"),
		secret: fs.String("webhook-secret", "", "the webhook's `secret` (GitLab: its token)"),
		forge:  fs.String("forge", forge, "`forge`: github, gitea (also Forgejo), gitlab or bitbucket"),
		branch: fs.String("default-branch", "", "`branch` for scheduled and default manual builds"+branchDefault),
		apiURL: fs.String("api-url", "", "the forge API's base `URL`, for commit statuses"+apiDefault),
	}
}

// repoSetCmd changes a repository's settings and keeps its builds: a
// rotated token in the clone URL, a new webhook secret, a moved forge.
func repoSetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("repo set", "repo set OWNER/NAME [--url GIT_URL] [--webhook-secret SECRET] [--forge F] [--default-branch B] [--api-url URL]",
		`Changes what the flags given say of a registered repository; the rest, and
its builds, stay. A new URL is read from the server first, as for repo add,
with a warning when that fails. A new webhook secret takes effect at once:
change it on the forge too. An empty --api-url goes back to the API the
clone URL implies.`, stdout, stderr)
	cf := addClientFlags(fs)
	rf := addRepoFlags(fs, "", "", "")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, "one OWNER/NAME", stderr) {
		return exitUsage
	}
	// Only the flags given change anything: an empty --api-url is a value.
	var ch api.RepoChange
	var what []string
	fields := map[string]struct {
		to  **string
		val *string
	}{"url": {&ch.CloneURL, rf.url}, "webhook-secret": {&ch.WebhookSecret, rf.secret}, "forge": {&ch.Forge, rf.forge},
		"default-branch": {&ch.DefaultBranch, rf.branch}, "api-url": {&ch.APIURL, rf.apiURL}}
	fs.Visit(func(f *flag.Flag) {
		if fl, ok := fields[f.Name]; ok {
			*fl.to = fl.val
			what = append(what, f.Name)
		}
	})
	if len(what) == 0 {
		fmt.Fprintln(stderr, "gantry repo set: nothing to change: give --url, --webhook-secret, --forge, --default-branch or --api-url")
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	r, err := c.UpdateRepo(ctx, fs.Arg(0), ch)
	if err != nil {
		return fail(stderr, "repo set", err)
	}
	if cf.json() {
		printJSON(stdout, r)
	} else {
		fmt.Fprintf(stdout, "updated %s: %s\n", r.Name, strings.Join(what, ", "))
	}
	if r.Warning != "" {
		fmt.Fprintf(stderr, "gantry repo set: warning: %s\n", r.Warning)
	}
	return exitOK
}

func triggerCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("trigger", "trigger OWNER/NAME [--branch B] [--commit SHA] [--follow]",
		"Starts a manual build. Without --commit it builds the branch's current head.", stdout, stderr)
	cf := addClientFlags(fs)
	branch := fs.String("branch", "", "`branch` to build (default: the repo's default branch)")
	commit := fs.String("commit", "", "exact commit `SHA` to build")
	follow := fs.Bool("follow", false, "stream the build's logs until it ends; exit 0 only if it succeeded")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, "one OWNER/NAME", stderr) {
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	b, err := c.Trigger(context.Background(), fs.Arg(0), api.Trigger{Branch: *branch, Commit: *commit})
	if err != nil {
		return fail(stderr, "trigger", err)
	}
	if *follow {
		fmt.Fprintf(stderr, "build %d (%s #%d) %s\n", b.ID, b.Repo, b.Number, b.Status)
		return followBuild(c, b.ID, "", cf.json(), stdout, stderr)
	}
	if cf.json() {
		printJSON(stdout, b)
	} else {
		fmt.Fprintf(stdout, "build %d (%s #%d) of %s at %s: %s\n", b.ID, b.Repo, b.Number, b.Branch, shortSHA(b.Commit), b.Status)
	}
	return exitOK
}

func shortSHA(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

func buildsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("builds", "builds [OWNER/NAME] [--branch B] [--status S]", "Lists builds, newest first.", stdout, stderr)
	cf := addClientFlags(fs)
	branch := fs.String("branch", "", "only this `branch`")
	status := fs.String("status", "", "only this `status`: queued, running, success, failure, error, cancelled or skipped")
	limit := fs.Int("limit", 20, "at most `N` builds")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "gantry builds: want at most one OWNER/NAME")
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	builds, err := c.Builds(context.Background(), fs.Arg(0), *branch, *status, *limit)
	if err != nil {
		return fail(stderr, "builds", err)
	}
	if cf.json() {
		printJSON(stdout, builds)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREPO\t#\tSTATUS\tEVENT\tBRANCH\tCOMMIT\tAUTHOR\tCREATED")
	for _, b := range builds {
		ref := b.Branch
		if b.Tag != "" {
			ref = b.Tag
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.Repo, b.Number, b.Status, b.Event, ref,
			shortSHA(b.Commit), b.Author, b.CreatedAt.Local().Format("2006-01-02 15:04:05"))
	}
	tw.Flush()
	return exitOK
}

func buildCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("build", "build ID", "Shows a build with its jobs and steps: status, exit code, duration.", stdout, stderr)
	cf := addClientFlags(fs)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, "one build ID", stderr) {
		return exitUsage
	}
	id, ok := parseID(fs.Arg(0), stderr, "build")
	if !ok {
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	b, err := c.Build(context.Background(), id)
	if err != nil {
		return fail(stderr, "build", err)
	}
	if cf.json() {
		printJSON(stdout, b)
		return exitOK
	}
	printBuild(stdout, b)
	return exitOK
}

func span(start, end *time.Time) string {
	if start == nil {
		return "-"
	}
	if end == nil {
		return console.Duration(time.Since(*start)) + "…"
	}
	return console.Duration(end.Sub(*start))
}

func codeText(c *int) string {
	if c == nil {
		return "-"
	}
	return strconv.Itoa(*c)
}

func printBuild(w io.Writer, b *api.Build) {
	ref := "branch " + b.Branch
	if b.Tag != "" {
		ref = "tag " + b.Tag
	}
	if b.PullRequest != 0 {
		ref = fmt.Sprintf("pull request #%d (%s into %s)", b.PullRequest, b.Branch, b.BaseBranch)
	}
	fmt.Fprintf(w, "build %d: %s #%d, %s\n", b.ID, b.Repo, b.Number, b.Status)
	fmt.Fprintf(w, "  %s at %s, %s by %s\n", ref, shortSHA(b.Commit), b.Event, b.Author)
	if b.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", strings.ReplaceAll(b.Reason, "\n", "\n    "))
	}
	fmt.Fprintf(w, "  duration: %s\n\n", span(b.StartedAt, b.FinishedAt))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB/STEP\tSTATUS\tEXIT\tDURATION\tREASON")
	for _, j := range b.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.Name, j.Status, codeText(j.ExitCode), span(j.StartedAt, j.FinishedAt), j.Reason)
		for _, s := range j.Steps {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Name, s.Status, codeText(s.ExitCode), span(s.StartedAt, s.FinishedAt), s.Reason)
		}
	}
	tw.Flush()
}

func logsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("logs", "logs ID [--job J] [--follow]", "Prints a build's logs, each line prefixed with its job.", stdout, stderr)
	cf := addClientFlags(fs)
	job := fs.String("job", "", "only this `job`")
	follow := fs.Bool("follow", false, "keep streaming until the build ends; exit 0 only if it succeeded")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, "one build ID", stderr) {
		return exitUsage
	}
	id, ok := parseID(fs.Arg(0), stderr, "logs")
	if !ok {
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	if *follow {
		return followBuild(c, id, *job, cf.json(), stdout, stderr)
	}
	lines, err := c.Logs(context.Background(), id, *job)
	if err != nil {
		return fail(stderr, "logs", err)
	}
	for _, l := range lines {
		printLine(stdout, l, cf.json())
	}
	return exitOK
}

func printLine(w io.Writer, l api.LogLine, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(l)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "[%s] %s\n", l.Job, l.Line)
}

func followBuild(c *api.Client, id int64, job string, asJSON bool, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := c.FollowLogs(ctx, id, job, func(l api.LogLine) { printLine(stdout, l, asJSON) })
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return exitInterrupt
		}
		return fail(stderr, "logs", err)
	}
	fmt.Fprintf(stderr, "build %d %s\n", b.ID, b.Status)
	if b.Status != "success" {
		return exitFailed
	}
	return exitOK
}

func cancelCmd(args []string, stdout, stderr io.Writer) int {
	return buildAction("cancel", "cancel ID", "Cancels a build: queued jobs are dropped, running ones stopped.", args, stdout, stderr,
		func(c *api.Client, id int64, _ bool) (*api.Build, error) { return c.Cancel(context.Background(), id) })
}

func retryCmd(args []string, stdout, stderr io.Writer) int {
	return buildAction("retry", "retry ID [--failed]", "Starts a new build of the same commit and pipeline.", args, stdout, stderr,
		func(c *api.Client, id int64, failed bool) (*api.Build, error) {
			return c.Retry(context.Background(), id, failed)
		})
}

func buildAction(name, synopsis, about string, args []string, stdout, stderr io.Writer, do func(*api.Client, int64, bool) (*api.Build, error)) int {
	fs := newFlagSet(name, synopsis, about, stdout, stderr)
	cf := addClientFlags(fs)
	failed := false
	if name == "retry" {
		fs.BoolVar(&failed, "failed", false, "re-run only the jobs that did not pass, reusing the ones that did")
	}
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, "one build ID", stderr) {
		return exitUsage
	}
	id, ok := parseID(fs.Arg(0), stderr, name)
	if !ok {
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	b, err := do(c, id, failed)
	if err != nil {
		return fail(stderr, name, err)
	}
	if cf.json() {
		printJSON(stdout, b)
	} else {
		fmt.Fprintf(stdout, "build %d (%s #%d): %s\n", b.ID, b.Repo, b.Number, b.Status)
	}
	return exitOK
}
