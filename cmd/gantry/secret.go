package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/secret"
)

const secretUsage = "gantry secret set OWNER/NAME KEY [--environment ENV] < VALUE | list OWNER/NAME | rm OWNER/NAME KEY [--environment ENV] | rotate-key"

const secretAbout = `A secret is a value a job receives as an environment variable when its
pipeline file names it ("secrets: [KEY]"); it is masked in the job's logs,
also as base64 and URL-encoded. The server keeps it encrypted (AES-256-GCM)
and no answer of its API ever holds it: 'gantry secret list' shows names,
environments and dates only.

A secret set with --environment is for that deployment environment only; a
build job receives unscoped secrets. Builds of pull requests from forks
receive none.

Run 'gantry secret set --help' (or list, rm, rotate-key) for a subcommand's
flags. See docs/secrets.md.`

func secretCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: "+secretUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, "usage: "+secretUsage+"\n\n"+secretAbout)
		return exitOK
	case "set":
		return secretSet(args, stdout, stderr)
	case "list", "ls":
		return secretList(args, stdout, stderr)
	case "rm", "remove":
		return secretRm(args, stdout, stderr)
	case "rotate-key":
		return secretRotate(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "gantry secret: unknown subcommand %q\nusage: %s\n", sub, secretUsage)
	return exitUsage
}

// refuseValueArg answers a value given on the command line.
const refuseValueArg = `gantry secret set: the value is read from stdin, never from the command line, where ps and the shell's history would keep it:
  gantry secret set OWNER/NAME KEY < FILE
  printf '%s' "$VALUE" | gantry secret set OWNER/NAME KEY
`

func secretSet(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("secret set", "secret set OWNER/NAME KEY [--environment ENV] < VALUE",
		`Sets a secret of a repository, reading its value from stdin: never from the
command line, where ps and the shell's history would keep it. One trailing
newline is dropped, so 'echo VALUE |' and a file ending in a newline give
VALUE. On a terminal it asks for the value without echoing it.

  gantry secret set acme/web DEPLOY_TOKEN < token.txt
  printf '%s' "$TOKEN" | gantry secret set acme/web DEPLOY_TOKEN --environment production

Setting an existing secret replaces its value.`, stdout, stderr)
	cf := addClientFlags(fs)
	env := fs.String("environment", "", "scope the secret to this deployment `environment` (default: unscoped, what build jobs receive)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 2 {
		io.WriteString(stderr, refuseValueArg)
		return exitUsage
	}
	if !needArgs(fs, 2, "OWNER/NAME KEY, and the value on stdin", stderr) {
		return exitUsage
	}
	repo, name := fs.Arg(0), fs.Arg(1)
	for _, err := range []error{secret.CheckName(name), secret.CheckEnvironment(*env)} {
		if err != nil {
			fmt.Fprintf(stderr, "gantry secret set: %v\n", err)
			return exitUsage
		}
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	value, err := readValue(name, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gantry secret set: read the value from stdin: %v\n", err)
		return exitUsage
	}
	if err := secret.CheckValue(value); err != nil {
		fmt.Fprintf(stderr, "gantry secret set: %v\n", err)
		return exitUsage
	}
	if len(strings.TrimSpace(value)) < 3 {
		fmt.Fprintln(stderr, "gantry secret set: warning: a value shorter than 3 characters is not masked in logs")
	}
	s, created, err := c.SetSecret(context.Background(), repo, api.SetSecret{Name: name, Environment: *env, Value: value})
	if err != nil {
		return fail(stderr, "secret set", err)
	}
	if cf.json() {
		printJSON(stdout, s)
		return exitOK
	}
	verb := "updated"
	if created {
		verb = "created"
	}
	fmt.Fprintf(stdout, "%s secret %s of %s%s\n", verb, s.Name, s.Repo, scopeText(s.Environment))
	return exitOK
}

// readValue reads a secret's value from stdin: from a terminal without
// echo, else all of it, less one trailing newline.
func readValue(name string, stderr io.Writer) (string, error) {
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprintf(stderr, "value of %s (not shown): ", name)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		return string(b), err
	}
	b, err := io.ReadAll(io.LimitReader(os.Stdin, secret.MaxValue+3))
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

func scopeText(env string) string {
	if env == "" {
		return ""
	}
	return " for environment " + env
}

func secretList(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("secret list", "secret list OWNER/NAME",
		"Lists a repository's secrets: names, environments (- for unscoped), the key each is\nencrypted under, and when each was created and last set. Never their values.", stdout, stderr)
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
	list, err := c.Secrets(context.Background(), fs.Arg(0))
	if err != nil {
		return fail(stderr, "secret list", err)
	}
	if cf.json() {
		printJSON(stdout, list)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENVIRONMENT\tKEY\tCREATED\tUPDATED")
	for _, s := range list {
		env := s.Environment
		if env == "" {
			env = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, env, s.KeyID,
			s.CreatedAt.Local().Format("2006-01-02 15:04:05"), s.UpdatedAt.Local().Format("2006-01-02 15:04:05"))
	}
	tw.Flush()
	return exitOK
}

func secretRm(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("secret rm", "secret rm OWNER/NAME KEY [--environment ENV]",
		"Removes a secret: the unscoped one, or with --environment the one of that environment.", stdout, stderr)
	cf := addClientFlags(fs)
	env := fs.String("environment", "", "remove the secret of this deployment `environment` (default: the unscoped one)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 2, "OWNER/NAME KEY", stderr) {
		return exitUsage
	}
	repo, name := fs.Arg(0), fs.Arg(1)
	for _, err := range []error{secret.CheckName(name), secret.CheckEnvironment(*env)} {
		if err != nil {
			fmt.Fprintf(stderr, "gantry secret rm: %v\n", err)
			return exitUsage
		}
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	if err := c.DeleteSecret(context.Background(), repo, name, *env); err != nil {
		return fail(stderr, "secret rm", err)
	}
	fmt.Fprintf(stdout, "removed secret %s of %s%s\n", name, repo, scopeText(*env))
	return exitOK
}

func secretRotate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("secret rotate-key", "secret rotate-key",
		`Re-encrypts every secret under a new key (admin token).

With the key file (DATA/secret.key) the server adds a new key to it, keeps
the old one until every secret is re-encrypted, then drops it: a crash on the
way loses nothing, and the next start finishes the work. With
GANTRY_SECRET_KEY, put a new key first (GANTRY_SECRET_KEY=NEW,OLD), restart
the server, run this, then remove the keys it says are no longer needed.

Exits 1 when a secret could not be re-encrypted; it names each, and why.`, stdout, stderr)
	cf := addClientFlags(fs)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !needArgs(fs, 0, "no arguments", stderr) {
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	r, err := c.RotateSecretKey(context.Background())
	if err != nil {
		return fail(stderr, "secret rotate-key", err)
	}
	if cf.json() {
		printJSON(stdout, r)
	} else {
		fmt.Fprintf(stdout, "secrets are encrypted under key %s: %d re-encrypted\n", r.KeyID, r.Reencrypted)
		for _, id := range r.Retired {
			if r.KeyFile != "" {
				fmt.Fprintf(stdout, "key %s is no longer needed: dropped from %s\n", id, r.KeyFile)
			} else {
				fmt.Fprintf(stdout, "key %s is no longer needed: remove it from GANTRY_SECRET_KEY\n", id)
			}
		}
	}
	for _, f := range r.Failed {
		fmt.Fprintf(stderr, "gantry secret rotate-key: could not re-encrypt %s\n", f)
	}
	for _, id := range r.Kept {
		fmt.Fprintf(stderr, "gantry secret rotate-key: key %s is kept: a secret above still needs it\n", id)
	}
	if len(r.Failed) > 0 {
		return exitFailed
	}
	return exitOK
}
