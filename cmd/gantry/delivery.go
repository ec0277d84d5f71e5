package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/artifact"
	"github.com/gantry-ci/gantry/internal/console"
)

func artifactsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("artifacts", "artifacts BUILD", `Lists the artifacts of a build: the files its jobs' artifacts: patterns
matched when they passed, with their size, permissions and SHA-256.`, stdout, stderr)
	return listOf(fs, args, stdout, stderr, "one build ID", func(c *api.Client, ctx context.Context) ([]api.Artifact, error) {
		id, ok := parseID(fs.Arg(0), io.Discard, "")
		if !ok {
			return nil, errUsage(fmt.Sprintf("build ID %q: want a positive number", fs.Arg(0)))
		}
		return c.Artifacts(ctx, id)
	}, "PATH\tSIZE\tMODE\tSHA256\tJOB", func(w io.Writer, a api.Artifact) {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.Path, console.Bytes(a.Size), a.Mode, a.SHA256, a.Job)
	})
}

// errUsage is a command line that is wrong in a way only the command sees:
// it exits 2.
type errUsage string

func (e errUsage) Error() string { return string(e) }

// listOf runs a command that takes one positional argument (what says
// which) and lists what fetch returns: as JSON with --output json, else as
// the table row writes.
func listOf[T any](fs *flag.FlagSet, args []string, stdout, stderr io.Writer, what string,
	fetch func(*api.Client, context.Context) ([]T, error), header string, row func(io.Writer, T)) int {
	cf := addClientFlags(fs)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 1, what, stderr) {
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	items, err := fetch(c, context.Background())
	var eu errUsage
	if errors.As(err, &eu) {
		fmt.Fprintf(stderr, "gantry %s: %v\n", fs.Name(), err)
		return exitUsage
	}
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

func artifactCmd(args []string, stdout, stderr io.Writer) int {
	return dispatch("artifact", "gantry artifact get BUILD PATH [-o FILE]",
		`Fetches an artifact's bytes from the server. They are checked against the
SHA-256 recorded when the job uploaded them as they arrive: with -o, a file
that does not match is never written; on standard output, the command fails
once it has seen the last byte.`,
		[]subcommand{{[]string{"get"}, func(args []string, stdout, stderr io.Writer) int {
			fs := newFlagSet("artifact get", "artifact get BUILD PATH [-o FILE]",
				"Writes the bytes of a build's artifact at PATH to FILE, or to standard output.", stdout, stderr)
			cf := addClientFlags(fs)
			out := fs.String("o", "", "write to `FILE` (with the artifact's permissions) instead of standard output")
			return clientCall(fs, cf, args, stdout, stderr, 2, "a build ID and an artifact PATH", func(c *api.Client, ctx context.Context) error {
				id, ok := parseID(fs.Arg(0), io.Discard, "")
				if !ok {
					return fmt.Errorf("build ID %q: want a positive number", fs.Arg(0))
				}
				body, err := c.Artifact(ctx, id, fs.Arg(1))
				if err != nil {
					return err
				}
				defer body.Close()
				if !artifact.ValidDigest(body.SHA256) {
					return fmt.Errorf("the server sent no SHA-256 for %s: cannot check it", fs.Arg(1))
				}
				if *out == "" {
					_, err := artifact.Verify(stdout, body, body.SHA256)
					return err
				}
				return writeVerified(*out, body)
			})
		}}}, args, stdout, stderr)
}

// writeVerified writes an artifact to path through a temporary file
// beside it, renamed into place only once its bytes matched.
func writeVerified(path string, body *api.ArtifactBody) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = artifact.Verify(f, body, body.SHA256)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s not written: %w", path, err)
	}
	mode := os.FileMode(body.Mode & 0o777)
	if mode == 0 {
		mode = 0o644
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func releasesCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("releases", "releases OWNER/NAME [--branch B] [--limit N]", `Lists a repo's releases, newest first. A release is what a green build of a
branch that feeds an environment (deploy: {branch: ...}), or of a tag, made:
its version (the tag, or BRANCH-NUMBER), commit, the authors of its commits,
and its artifacts with their SHA-256.`, stdout, stderr)
	branch := fs.String("branch", "", "only releases of this `branch`")
	limit := fs.Int("limit", 20, "at most `N` releases")
	return listOf(fs, args, stdout, stderr, "one OWNER/NAME", func(c *api.Client, ctx context.Context) ([]api.Release, error) {
		return c.Releases(ctx, fs.Arg(0), *branch, *limit)
	}, "VERSION\tBUILD\tCOMMIT\tAUTHORS\tARTIFACTS\tCREATED", func(w io.Writer, r api.Release) {
		fmt.Fprintf(w, "%s\t%d (#%d)\t%s\t%s\t%d\t%s\n", r.Version, r.BuildID, r.BuildNumber, shortSHA(r.Commit),
			strings.Join(r.Authors, ", "), len(r.Artifacts), r.CreatedAt.Local().Format(time.DateTime))
	})
}

func releaseCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("release", "release OWNER/NAME VERSION", "Shows a release: its build, commit, authors, the issues it ships (keys such as\nABC-123 or #123 that its commits name, since the previous release of its\nbranch), artifacts and where it was deployed.", stdout, stderr)
	cf := addClientFlags(fs)
	return clientCall(fs, cf, args, stdout, stderr, 2, "OWNER/NAME and a release VERSION", func(c *api.Client, ctx context.Context) error {
		r, err := c.Release(ctx, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		if cf.json() {
			printJSON(stdout, r)
			return nil
		}
		ref := "branch " + r.Branch
		if r.Tag != "" {
			ref = "tag " + r.Tag
		}
		issues := strings.Join(r.Issues, ", ")
		if issues == "" {
			issues = "-"
		}
		fmt.Fprintf(stdout, "release %s of %s\n  build %d (#%d), %s at %s\n  authors: %s\n  issues: %s\n  created: %s\n\n",
			r.Version, r.Repo, r.BuildID, r.BuildNumber, ref, r.Commit, strings.Join(r.Authors, ", "), issues, r.CreatedAt.Local().Format(time.DateTime))
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ARTIFACT\tSIZE\tMODE\tSHA256")
		for _, a := range r.Artifacts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Path, console.Bytes(a.Size), a.Mode, a.SHA256)
		}
		tw.Flush()
		if len(r.Deployments) > 0 {
			fmt.Fprintln(stdout)
			printDeployments(stdout, r.Deployments)
		}
		return nil
	})
}

const deploymentHeader = "DEPLOYMENT\tENVIRONMENT\tRELEASE\tSTATE\tBY\tAPPROVED\tBUILD\tREQUESTED\tREASON"

func deploymentRow(w io.Writer, d api.Deployment) {
	build := "-"
	if d.BuildID != 0 {
		build = strconv.FormatInt(d.BuildID, 10)
	}
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Environment, d.Release, d.State, by(d), approvals(d), build,
		d.CreatedAt.Local().Format(time.DateTime), oneLine(d.Reason+d.Waiting))
}

// approvals says who approved a deployment out of how many needed: "1/2
// bob"; "-" where none are asked for.
func approvals(d api.Deployment) string {
	a := d.Approvals
	if a == nil {
		return "-"
	}
	s := fmt.Sprintf("%d/%d", len(a.ApprovedBy), a.Required)
	if len(a.ApprovedBy) > 0 {
		s += " " + strings.Join(a.ApprovedBy, ",")
	}
	if a.RejectedBy != "" {
		s += " rejected by " + a.RejectedBy
	}
	return s
}

func printDeployments(w io.Writer, ds []api.Deployment) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, deploymentHeader)
	for _, d := range ds {
		deploymentRow(tw, d)
	}
	tw.Flush()
}

// by says who asked for a deployment, and how.
func by(d api.Deployment) string {
	if d.RequestedBy == "" {
		return "gantry (" + d.Kind + ")"
	}
	return d.RequestedBy + " (" + d.Kind + ")"
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	return s
}

func deploymentsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("deployments", "deployments OWNER/NAME [--env E] [--limit N]",
		"Lists a repo's deployments, newest first: what went where, asked by whom, and how it ended.", stdout, stderr)
	env := fs.String("env", "", "only deployments to this `environment`")
	limit := fs.Int("limit", 20, "at most `N` deployments")
	return listOf(fs, args, stdout, stderr, "one OWNER/NAME", func(c *api.Client, ctx context.Context) ([]api.Deployment, error) {
		return c.Deployments(ctx, fs.Arg(0), *env, *limit)
	}, deploymentHeader, deploymentRow)
}

func envsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("envs", "envs OWNER/NAME", `Shows a repo's environments: the release that runs in each, since when and
who asked for it; whether a freeze window is open (FROZEN); the deployment
running now; those waiting their turn or for approval, and why, with who
approved so far; and a deployment that failed or was cancelled since the
current one.`, stdout, stderr)
	return listOf(fs, args, stdout, stderr, "one OWNER/NAME", func(c *api.Client, ctx context.Context) ([]api.Environment, error) {
		return c.Environments(ctx, fs.Arg(0))
	}, "ENVIRONMENT\tRELEASE\tSINCE\tBY\tFROZEN\tNOW", func(w io.Writer, e api.Environment) {
		release, since, who := "-", "-", "-"
		if d := e.Current; d != nil {
			release, who = d.Release, by(*d)
			if d.FinishedAt != nil {
				since = d.FinishedAt.Local().Format(time.DateTime)
			}
		}
		var now []string
		if d := e.Active; d != nil {
			now = append(now, fmt.Sprintf("deploying %s (deployment %d, build %d, %s)", d.Release, d.ID, d.BuildID, by(*d)))
		}
		if len(e.Waiting) > 0 {
			var vs []string
			for _, d := range e.Waiting {
				v := fmt.Sprintf("%s (deployment %d)", d.Release, d.ID)
				if d.State == api.StateWaitingForApproval {
					v = fmt.Sprintf("%s (deployment %d, waiting for approval: %s)", d.Release, d.ID, approvals(d))
				} else if d.Waiting != "" {
					v = fmt.Sprintf("%s (deployment %d: %s)", d.Release, d.ID, d.Waiting)
				}
				vs = append(vs, v)
			}
			now = append(now, "waiting: "+strings.Join(vs, ", "))
		}
		if d := e.Last; d != nil {
			now = append(now, fmt.Sprintf("%s %s (deployment %d): %s", d.Release, d.State, d.ID, oneLine(d.Reason)))
		}
		if len(now) == 0 {
			now = []string{"-"}
		}
		frozen := "-"
		if f := e.Frozen; f != nil {
			frozen = "until " + f.Until.Local().Format(time.DateTime)
			if f.Reason != "" {
				frozen += " (" + f.Reason + ")"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, release, since, who, frozen, strings.Join(now, "; "))
	})
}

// deployFlags are what deploy, promote and rollback share.
type deployFlags struct {
	cf       clientFlags
	wait     *bool
	override *bool
}

func addDeployFlags(fs *flag.FlagSet) deployFlags {
	return deployFlags{cf: addClientFlags(fs),
		wait:     fs.Bool("wait", false, "wait until the deployment ends; exit 0 only if it succeeded"),
		override: fs.Bool("override-freeze", false, "deploy even while a freeze window is open (admins only; needs --reason, which the audit log records)")}
}

// requested prints a deployment just asked for, and with --wait follows
// it to its end.
func (df deployFlags) requested(c *api.Client, ctx context.Context, d *api.Deployment, stdout, stderr io.Writer) error {
	describe := func(d *api.Deployment) string {
		s := fmt.Sprintf("deployment %d: %s to %s, %s", d.ID, d.Release, d.Environment, d.State)
		if d.BuildID != 0 {
			s += fmt.Sprintf(" (build %d: gantry logs %d --follow)", d.BuildID, d.BuildID)
		}
		if r := d.Waiting + d.Reason; r != "" {
			s += ": " + oneLine(r)
		}
		return s
	}
	if !*df.wait {
		printResult(df.cf, stdout, d, "%s\n", describe(d))
		return nil
	}
	fmt.Fprintln(stderr, describe(d))
	for d.State == "pending" || d.State == api.StateWaitingForApproval || d.State == "running" {
		time.Sleep(500 * time.Millisecond)
		ds, err := c.Deployments(ctx, d.Repo, d.Environment, 1000)
		if err != nil {
			return err
		}
		found := false
		for i := range ds {
			if ds[i].ID == d.ID {
				d, found = &ds[i], true
			}
		}
		if !found {
			return fmt.Errorf("deployment %d is gone", d.ID)
		}
	}
	printResult(df.cf, stdout, d, "%s\n", describe(d))
	if d.State != "succeeded" {
		return fmt.Errorf("deployment %d %s", d.ID, d.State)
	}
	return nil
}

func deployCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("deploy", "deploy OWNER/NAME ENV --release VERSION [--wait]", `Deploys a release to an environment: its artifacts, checked against their
SHA-256, are placed in a workspace of its commit and the environment's steps
run there, as a job on an agent (runs-on applies), with GANTRY_ENVIRONMENT
and GANTRY_RELEASE set. One deployment runs at a time per environment; this
one waits for those asked before it, and never stops a running one.
An environment with promote-from takes only releases that succeeded there.
Needs the developer role on the repo, and where the environment names
groups, membership of one (or an admin). Where it asks for approvals, the
deployment waits for them (gantry approve). While a freeze window is open
there it is refused, unless an admin gives --override-freeze --reason R.`, stdout, stderr)
	df := addDeployFlags(fs)
	release := fs.String("release", "", "the `VERSION` of the release to deploy (gantry releases lists them)")
	return deployCall(fs, df, args, stdout, stderr, 2, "OWNER/NAME and ENV", func() error {
		if *release == "" {
			return errors.New("--release is required: the version to deploy (gantry releases " + fs.Arg(0) + " lists them)")
		}
		return nil
	}, func(c *api.Client, ctx context.Context) (*api.Deployment, error) {
		return c.Deploy(ctx, api.DeployRequest{Repo: fs.Arg(0), Environment: fs.Arg(1), Release: *release, OverrideFreeze: *df.override})
	})
}

func promoteCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("promote", "promote OWNER/NAME --from ENV --to ENV [--release VERSION] [--wait]", `Deploys to --to the release that runs in --from now (or --release, which
must have succeeded in --from): the very artifacts tested there. --to must
name --from as its promote-from. Needs the developer role on the repo;
groups, approvals and freeze windows apply as for gantry deploy.`, stdout, stderr)
	df := addDeployFlags(fs)
	from := fs.String("from", "", "the `environment` the release succeeded in")
	to := fs.String("to", "", "the `environment` to deploy it to")
	release := fs.String("release", "", "the `VERSION` to promote (default: the one running in --from)")
	return deployCall(fs, df, args, stdout, stderr, 1, "one OWNER/NAME", func() error {
		if *from == "" || *to == "" {
			return errors.New("--from and --to are required")
		}
		return nil
	}, func(c *api.Client, ctx context.Context) (*api.Deployment, error) {
		return c.Promote(ctx, api.PromoteRequest{Repo: fs.Arg(0), From: *from, To: *to, Release: *release, OverrideFreeze: *df.override})
	})
}

func rollbackCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rollback", "rollback OWNER/NAME ENV [--wait]", `Deploys again the release that ran in ENV before the current one, with its
own artifacts and steps. Rolling back again goes one further back, not
forth. Needs the developer role on the repo; groups, approvals and freeze
windows apply as for gantry deploy.`, stdout, stderr)
	df := addDeployFlags(fs)
	return deployCall(fs, df, args, stdout, stderr, 2, "OWNER/NAME and ENV", func() error { return nil },
		func(c *api.Client, ctx context.Context) (*api.Deployment, error) {
			return c.Rollback(ctx, api.RollbackRequest{Repo: fs.Arg(0), Environment: fs.Arg(1), OverrideFreeze: *df.override})
		})
}

// deployCall runs deploy, promote or rollback: check validates the
// command line (an error is a usage error), ask makes the request.
func deployCall(fs *flag.FlagSet, df deployFlags, args []string, stdout, stderr io.Writer, nargs int, what string,
	check func() error, ask func(c *api.Client, ctx context.Context) (*api.Deployment, error)) int {
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, nargs, what, stderr) {
		return exitUsage
	}
	if err := check(); err != nil {
		fmt.Fprintf(stderr, "gantry %s: %v\n", fs.Name(), err)
		return exitUsage
	}
	if *df.override && *df.cf.reason == "" {
		fmt.Fprintf(stderr, "gantry %s: --override-freeze needs --reason R: the audit log records why\n", fs.Name())
		return exitUsage
	}
	c, ok := df.cf.client(stderr)
	if !ok {
		return exitUsage
	}
	ctx := context.Background()
	d, err := ask(c, ctx)
	if err == nil {
		err = df.requested(c, ctx, d, stdout, stderr)
	}
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	return exitOK
}

// parseRetention reads --artifact-retention: days ("30d"), a duration of
// at least a second ("12h"), or "never" (and "0"), which is 0.
func parseRetention(s string) (time.Duration, error) {
	switch s {
	case "never", "0":
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 36500 {
			return 0, fmt.Errorf("%q: want a number of days from 1 to 36500, such as 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("%q: want days (30d), a duration of at least 1s (12h), or never", s)
	}
	return d, nil
}
