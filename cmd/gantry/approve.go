package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gantry-ci/gantry/internal/api"
)

func approveCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("approve", "approve DEPLOYMENT [--comment C]", `Approves a deployment waiting for approval (gantry envs and gantry
deployments show them). Its environment's approvals: say how many distinct
people must approve and from which groups; with author-may-approve: false
(the default) neither the person who requested the deployment nor anyone
who authored a commit of its release may. An approval holds for that
deployment of that release only. The deployment starts, in its turn, once
enough people approved. Recorded in the audit log.`, stdout, stderr)
	cf := addClientFlags(fs)
	comment := fs.String("comment", "", "a `comment` recorded with the approval")
	return decideCall(fs, cf, args, stdout, stderr, func() error { return nil }, func(c *api.Client, ctx context.Context, id int64) (*api.Deployment, error) {
		return c.Approve(ctx, id, *comment)
	})
}

func withdrawCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("withdraw", "withdraw DEPLOYMENT [--reason R]", `Withdraws a deployment that has not started (waiting its turn, its
approvals or the end of a freeze): it ends, cancelled, "withdrawn by you",
and the next in line gets its turn. Whoever may deploy to its environment
may withdraw it, an automatic one too. A deployment that runs already is
refused: cancel its build (gantry cancel BUILD). Recorded in the audit log,
with --reason.`, stdout, stderr)
	cf := addClientFlags(fs)
	return decideCall(fs, cf, args, stdout, stderr, func() error { return nil }, func(c *api.Client, ctx context.Context, id int64) (*api.Deployment, error) {
		return c.Withdraw(ctx, id)
	})
}

func rejectCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("reject", "reject DEPLOYMENT --comment C", `Rejects a deployment waiting for approval: it ends, failed, with your
comment as the reason. Who may reject is who may approve (gantry approve
--help). Recorded in the audit log.`, stdout, stderr)
	cf := addClientFlags(fs)
	comment := fs.String("comment", "", "why, in one line of `text` (required)")
	return decideCall(fs, cf, args, stdout, stderr, func() error {
		if *comment == "" {
			return errors.New("--comment is required: say why")
		}
		return nil
	}, func(c *api.Client, ctx context.Context, id int64) (*api.Deployment, error) {
		return c.Reject(ctx, id, *comment)
	})
}

// decideCall runs approve or reject: one deployment ID; check validates
// the flags (an error is a usage error); ask makes the request.
func decideCall(fs *flag.FlagSet, cf clientFlags, args []string, stdout, stderr io.Writer, check func() error,
	ask func(c *api.Client, ctx context.Context, id int64) (*api.Deployment, error)) int {
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, "one DEPLOYMENT ID", stderr) {
		return exitUsage
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(fs.Arg(0), "#"), 10, 64)
	if err != nil || id < 1 {
		fmt.Fprintf(stderr, "gantry %s: deployment ID %q: want a positive number\n", fs.Name(), fs.Arg(0))
		return exitUsage
	}
	if err := check(); err != nil {
		fmt.Fprintf(stderr, "gantry %s: %v\n", fs.Name(), err)
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	d, err := ask(c, context.Background(), id)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	line := fmt.Sprintf("deployment %d: %s to %s, %s", d.ID, d.Release, d.Environment, d.State)
	if d.Approvals != nil {
		line += ", approved " + approvals(*d)
	}
	if d.Reason != "" {
		line += ": " + oneLine(d.Reason)
	}
	printResult(cf, stdout, d, "%s\n", line)
	return exitOK
}
