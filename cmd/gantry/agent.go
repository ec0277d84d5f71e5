package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gantry-ci/gantry/internal/agent"
	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/git"
)

const agentAbout = `Runs jobs for a Gantry server on this machine. The agent needs only
outbound HTTP(S) to the server: it holds one request per free slot that the
server answers the moment a job fits. It checks each job's commit out from
the repository's clone URL into --work and runs its steps as this user.

Labels say what this machine offers; a job runs here only when every label
in its runs-on is among them. The agent token (gantry agent-token create)
may limit which labels its agents may claim.

Several --server URLs (comma-separated) name servers over one database: the
agent moves to the next when one cannot be reached.

SIGTERM or Ctrl-C drains: no new job is taken, running jobs finish. A second
signal stops them; the server records them as cancelled and runs them again
elsewhere when retries allow. Exit status 1 when the server refused the
token (revoked or unknown).`

func agentCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agent", "agent --server URL --token T [--labels L,...] [--capacity N] [--name NAME]", agentAbout, stdout, stderr)
	defServer := os.Getenv("GANTRY_SERVER")
	if defServer == "" {
		defServer = "http://127.0.0.1:8080"
	}
	host, _ := os.Hostname()
	servers := fs.String("server", defServer, "server `URL`s, comma-separated (env GANTRY_SERVER)")
	token := fs.String("token", "", "agent `token` (env GANTRY_AGENT_TOKEN)")
	labels := fs.String("labels", "", "`labels` this machine offers, comma-separated (default: OS, arch, and docker when a Docker Engine answers)")
	capacity := fs.Int("capacity", runtime.NumCPU(), "jobs run at once (`N`)")
	name := fs.String("name", host, "agent `name`, unique among the server's agents")
	work := fs.String("work", "gantry-agent", "work `dir`: repository caches and job workspaces")
	killGrace := fs.Duration("kill-grace", 10*time.Second, "how long a stopped step gets between SIGTERM and SIGKILL")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gantry agent: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *token == "" {
		*token = os.Getenv("GANTRY_AGENT_TOKEN")
	}
	if *token == "" {
		fmt.Fprintln(stderr, "gantry agent: no agent token: set GANTRY_AGENT_TOKEN or pass --token (gantry agent-token create makes one)")
		return exitUsage
	}
	if *capacity < 1 {
		fmt.Fprintf(stderr, "gantry agent: --capacity %d: want at least 1\n", *capacity)
		return exitUsage
	}
	var urls []string
	for _, u := range strings.Split(*servers, ",") {
		if u = strings.TrimSpace(u); u != "" {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				fmt.Fprintf(stderr, "gantry agent: --server %q: want an http:// or https:// URL\n", u)
				return exitUsage
			}
			urls = append(urls, strings.TrimSuffix(u, "/"))
		}
	}
	if len(urls) == 0 {
		fmt.Fprintln(stderr, "gantry agent: --server: want at least one URL")
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "gantry agent: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	dir, err := filepath.Abs(*work)
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gantry agent: work dir: %v\n", err)
		return exitFailed
	}

	machine := agent.NewMachine(context.Background(), *name, dir, *killGrace, log)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		machine.Close(ctx)
	}()
	have := append([]string{runtime.GOOS, runtime.GOARCH}, machine.Labels...)
	if *labels == "" {
		*labels = strings.Join(have, ",")
	} else if slices.Contains(splitList(*labels), "docker") && !slices.Contains(machine.Labels, "docker") {
		log.Warn("--labels has docker, but no Docker Engine answers here: jobs with an image will fail")
	}
	a := agent.New(agent.NewRemote(urls, *token, log), machine.Backend, git.NewMirrors(filepath.Join(dir, "repos")), log, agent.Options{
		Name: *name, Labels: splitList(*labels), Capacity: *capacity, Version: version(),
		WorkDir: filepath.Join(dir, "work"),
	})

	leaseCtx, drain := context.WithCancel(context.Background())
	jobCtx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		log.Info("stopping: running jobs finish, no new job is taken; a second signal stops them")
		drain()
		<-sigs
		log.Warn("second signal: stopping running jobs now")
		stop()
	}()
	log.Info("gantry agent started", "name", *name, "servers", strings.Join(urls, ","), "labels", *labels, "capacity", *capacity)
	if err := a.Run(leaseCtx, jobCtx); err != nil {
		fmt.Fprintf(stderr, "gantry agent: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func agentTokenCmd(args []string, stdout, stderr io.Writer) int {
	usage := "gantry agent-token create NAME [--labels L,...] | list | revoke ID"
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	ctx := context.Background()
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, "usage: "+usage+"\n\nAgent tokens let agents lease and run jobs, and nothing else. Only an admin may\nmake or revoke them; a revoked token is refused at once, and the jobs its\nagents run are handed to other agents.\n\nRun 'gantry agent-token create --help' (or list, revoke) for a subcommand's flags.")
		return exitOK
	case "create":
		fs := newFlagSet("agent-token create", "agent-token create NAME [--labels L,...]",
			"Creates an agent token and prints it once. With --labels, its agents may claim only those labels.", stdout, stderr)
		cf := addClientFlags(fs)
		labels := fs.String("labels", "", "the only `labels` its agents may claim, comma-separated (default: any)")
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one NAME", stderr) {
			return exitUsage
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		t, err := c.CreateAgentToken(ctx, api.NewAgentToken{Name: fs.Arg(0), Labels: splitList(*labels)})
		if err != nil {
			return fail(stderr, "agent-token create", err)
		}
		if cf.json() {
			printJSON(stdout, t)
			return exitOK
		}
		fmt.Fprintf(stdout, "Created agent token %d (%s). It is shown only this once:\n\n    %s\n\nStart an agent with: gantry agent --server %s --token TOKEN\n",
			t.ID, t.Name, t.Token, strings.TrimSuffix(*cf.server, "/"))
		return exitOK
	case "list", "ls":
		return listCmd(newFlagSet("agent-token list", "agent-token list", "Lists agent tokens, revoked ones too; never their secrets.", stdout, stderr),
			args, stdout, stderr, (*api.Client).AgentTokens, "ID\tNAME\tLABELS\tCREATED\tREVOKED", func(w io.Writer, t api.AgentToken) {
				revoked := "-"
				if t.RevokedAt != nil {
					revoked = t.RevokedAt.Local().Format(time.DateTime)
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", t.ID, t.Name, orAny(t.Labels), t.CreatedAt.Local().Format(time.DateTime), revoked)
			})
	case "revoke":
		fs := newFlagSet("agent-token revoke", "agent-token revoke ID",
			"Revokes an agent token: its agents are refused at once and their running jobs go to other agents.", stdout, stderr)
		cf := addClientFlags(fs)
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one token ID", stderr) {
			return exitUsage
		}
		id, ok := parseID(fs.Arg(0), stderr, "agent-token revoke")
		if !ok {
			return exitUsage
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		t, err := c.RevokeAgentToken(ctx, id)
		if err != nil {
			return fail(stderr, "agent-token revoke", err)
		}
		if cf.json() {
			printJSON(stdout, t)
		} else {
			fmt.Fprintf(stdout, "revoked agent token %d (%s)\n", t.ID, t.Name)
		}
		return exitOK
	}
	fmt.Fprintf(stderr, "gantry agent-token: unknown subcommand %q\nusage: %s\n", sub, usage)
	return exitUsage
}

func orAny(labels []string) string {
	if len(labels) == 0 {
		return "(any)"
	}
	return strings.Join(labels, ",")
}

func agentsCmd(args []string, stdout, stderr io.Writer) int {
	return listCmd(newFlagSet("agents", "agents", "Lists the agents the server has seen: labels, state (idle, busy, draining, offline),\nrunning jobs, last heartbeat and version.", stdout, stderr),
		args, stdout, stderr, (*api.Client).Agents, "NAME\tSTATE\tLABELS\tJOBS\tLAST SEEN\tVERSION", func(w io.Writer, a api.Agent) {
			running := fmt.Sprintf("%d/%d", len(a.Running), a.Capacity)
			for i, j := range a.Running {
				sep := ", "
				if i == 0 {
					sep = " "
				}
				running += fmt.Sprintf("%s#%d %s", sep, j.BuildID, j.Job)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s ago\t%s\n", a.Name, a.State, orAny(a.Labels), running,
				time.Since(a.LastSeen).Round(time.Second), a.Version)
		})
}

func queueCmd(args []string, stdout, stderr io.Writer) int {
	return listCmd(newFlagSet("queue", "queue", "Lists the jobs that wait to run, oldest first, each with why it waits.", stdout, stderr),
		args, stdout, stderr, (*api.Client).Queue, "BUILD\tREPO\tJOB\tWAITING\tREASON", func(w io.Writer, j api.QueuedJob) {
			reason := j.Reason
			if reason == "" {
				reason = "about to start"
			}
			fmt.Fprintf(w, "#%d\t%s\t%s\t%s\t%s\n", j.BuildID, j.Repo, j.Job, time.Since(j.Since).Round(time.Second), reason)
		})
}
