package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

func freezeCmd(args []string, stdout, stderr io.Writer) int {
	return dispatch("freeze", "gantry freeze add OWNER/NAME ENV --until WHEN --reason R [--from WHEN] | list OWNER/NAME | rm ID",
		`A freeze holds every deployment to an environment, automatic or asked for,
from --from (now unless given) until --until: a request is refused saying
until when and why, and an automatic deployment waits for the end. An
admin may still deploy with --override-freeze --reason R. Freezes set here
add to the freeze: windows of the pipeline file. Setting and removing one
needs the admin role on the repo, and both are in the audit log.`,
		[]subcommand{
			{[]string{"add"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("freeze add", "freeze add OWNER/NAME ENV --until WHEN --reason R [--from WHEN]",
					`Freezes an environment. WHEN is an RFC 3339 time (2026-12-24T18:00:00Z) or
a duration from now (90m, 4h, 3d). --reason is required: it is shown to
whoever the freeze holds back, and recorded in the audit log. A freeze may
last at most 90 days.`,
					stdout, stderr)
				cf := addClientFlags(fs)
				until := fs.String("until", "", "when the freeze ends (`WHEN`; required)")
				from := fs.String("from", "", "when it starts (`WHEN`; default now)")
				reason := cf.reason // why, shown to whoever it holds back; also the audit entry's reason
				if code, done := parseFlags(fs, args, stdout); done {
					return code
				}
				if !needArgs(fs, 2, "OWNER/NAME and ENV", stderr) {
					return exitUsage
				}
				usage := func(format string, args ...any) int {
					fmt.Fprintf(stderr, "gantry freeze add: "+format+"\n", args...)
					return exitUsage
				}
				if *until == "" || *reason == "" {
					return usage("--until and --reason are required")
				}
				now := time.Now()
				req := api.FreezeRequest{Repo: fs.Arg(0), Environment: fs.Arg(1), Reason: *reason}
				var err error
				if req.Until, err = parseWhen(*until, now, 1); err != nil {
					return usage("--until %v", err)
				}
				if *from != "" {
					t, err := parseWhen(*from, now, 1)
					if err != nil {
						return usage("--from %v", err)
					}
					req.Since = &t
				}
				c, ok := cf.client(stderr)
				if !ok {
					return exitUsage
				}
				f, err := c.AddFreeze(context.Background(), req)
				if err != nil {
					return fail(stderr, fs.Name(), err)
				}
				printResult(cf, stdout, f, "freeze %d: %s of %s is frozen from %s until %s (%s)\n", f.ID, f.Environment, f.Repo,
					f.Since.Local().Format(time.RFC3339), f.Until.Local().Format(time.RFC3339), f.Reason)
				return exitOK
			}},
			{[]string{"list", "ls"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("freeze list", "freeze list OWNER/NAME", "Lists the freezes set on a repo's environments that have not ended.", stdout, stderr)
				return listOf(fs, args, stdout, stderr, "one OWNER/NAME", func(c *api.Client, ctx context.Context) ([]api.Freeze, error) {
					return c.Freezes(ctx, fs.Arg(0))
				}, "ID\tENVIRONMENT\tFROM\tUNTIL\tSET BY\tREASON", func(w io.Writer, f api.Freeze) {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Environment, f.Since.Local().Format(time.RFC3339),
						f.Until.Local().Format(time.RFC3339), f.SetBy, f.Reason)
				})
			}},
			{[]string{"rm", "remove"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("freeze rm", "freeze rm ID", "Removes a freeze; what it held starts if its turn has come.", stdout, stderr)
				cf := addClientFlags(fs)
				return clientCall(fs, cf, args, stdout, stderr, 1, "one freeze ID", func(c *api.Client, ctx context.Context) error {
					id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
					if err != nil || id < 1 {
						return fmt.Errorf("freeze ID %q: want a positive number (gantry freeze list OWNER/NAME shows them)", fs.Arg(0))
					}
					f, err := c.DeleteFreeze(ctx, id)
					if err != nil {
						return err
					}
					printResult(cf, stdout, f, "removed freeze %d of %s of %s\n", f.ID, f.Environment, f.Repo)
					return nil
				})
			}},
		}, args, stdout, stderr)
}
