package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

// subcommand is one verb of a command such as `gantry user add`.
type subcommand struct {
	names []string // the first is the one usage shows
	run   func(args []string, stdout, stderr io.Writer) int
}

// dispatch runs the subcommand args[0] names; usage is the command's
// synopsis and about what --help adds to it.
func dispatch(cmd, usage, about string, subs []subcommand, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, "usage: %s\n\n%s\n\nRun 'gantry %s SUBCOMMAND --help' for a subcommand's flags.\n", usage, about, cmd)
		return exitOK
	}
	for _, s := range subs {
		for _, n := range s.names {
			if n == args[0] {
				return s.run(args[1:], stdout, stderr)
			}
		}
	}
	fmt.Fprintf(stderr, "gantry %s: unknown subcommand %q\nusage: %s\n", cmd, args[0], usage)
	return exitUsage
}

// clientCall parses a subcommand's flags, checks it got nargs positional
// arguments (-1: at least one), and runs do with a client.
func clientCall(fs *flag.FlagSet, cf clientFlags, args []string, stdout, stderr io.Writer, nargs int, what string,
	do func(c *api.Client, ctx context.Context) error) int {
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if nargs >= 0 && fs.NArg() != nargs || nargs < 0 && fs.NArg() == 0 {
		fmt.Fprintf(stderr, "gantry %s: want %s\n", fs.Name(), what)
		return exitUsage
	}
	c, ok := cf.client(stderr)
	if !ok {
		return exitUsage
	}
	if err := do(c, context.Background()); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	return exitOK
}

// printResult prints v as JSON with --output json, else the text line.
func printResult(cf clientFlags, stdout io.Writer, v any, format string, args ...any) {
	if cf.json() {
		printJSON(stdout, v)
		return
	}
	fmt.Fprintf(stdout, format, args...)
}

func when(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Local().Format(time.DateTime)
}

const expiresUsage = "how long the token lasts: days (`30d`), a duration (12h) or never"

func userCmd(args []string, stdout, stderr io.Writer) int {
	return dispatch("user", "gantry user add NAME [--admin] | list | rm NAME",
		`Users sign in with API tokens. An admin may do everything; everyone else
may do what their roles allow (see 'gantry role'). Only an admin manages
users. 'user add' prints the new user's first token once: hand it over; they
can then make their own with 'gantry token create'.`,
		[]subcommand{
			{[]string{"add"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("user add", "user add NAME [--admin] [--expires 30d]",
					"Creates a user and prints their first API token, once.", stdout, stderr)
				cf := addClientFlags(fs)
				admin := fs.Bool("admin", false, "make the user an admin: everything, on every repo")
				expires := fs.String("expires", "", expiresUsage+" (default 90d)")
				return clientCall(fs, cf, args, stdout, stderr, 1, "one user NAME", func(c *api.Client, ctx context.Context) error {
					u, err := c.AddUser(ctx, api.NewUser{Name: fs.Arg(0), Admin: *admin, Expires: *expires})
					if err != nil {
						return err
					}
					printResult(cf, stdout, u, "Created user %s. Their API token is shown only this once:\n\n    %s\n\nexpires: %s\n",
						u.Name, u.Token.Token, when(u.Token.ExpiresAt, "never"))
					return nil
				})
			}},
			{[]string{"list", "ls"}, func(args []string, stdout, stderr io.Writer) int {
				return listCmd(newFlagSet("user list", "user list", "Lists users.", stdout, stderr),
					args, stdout, stderr, (*api.Client).Users, "NAME\tADMIN\tCREATED", func(w io.Writer, u api.User) {
						fmt.Fprintf(w, "%s\t%v\t%s\n", u.Name, u.Admin, u.CreatedAt.Local().Format(time.DateTime))
					})
			}},
			{[]string{"rm", "remove"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("user rm", "user rm NAME",
					"Removes a user with their tokens, group memberships and roles. The last admin cannot be removed.", stdout, stderr)
				cf := addClientFlags(fs)
				return clientCall(fs, cf, args, stdout, stderr, 1, "one user NAME", func(c *api.Client, ctx context.Context) error {
					if err := c.DeleteUser(ctx, fs.Arg(0)); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "removed user %s\n", fs.Arg(0))
					return nil
				})
			}},
		}, args, stdout, stderr)
}

func tokenCmd(args []string, stdout, stderr io.Writer) int {
	return dispatch("token", "gantry token create [--name N] [--expires 30d] | list | revoke ID",
		`API tokens are your own: each acts as you, with your roles. A token is shown
once, stored only as a hash, and stops working when it expires or is revoked.
An admin may make, list and revoke other users' tokens with --user.`,
		[]subcommand{
			{[]string{"create"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("token create", "token create [--name N] [--expires 30d] [--user U]",
					"Creates an API token for you (an admin: for --user) and prints it once.", stdout, stderr)
				cf := addClientFlags(fs)
				name := fs.String("name", "token", "a `name` that says where the token is used")
				expires := fs.String("expires", "", expiresUsage+" (default 90d)")
				user := fs.String("user", "", "make it for this `user` (admins only)")
				return clientCall(fs, cf, args, stdout, stderr, 0, "no arguments, only flags", func(c *api.Client, ctx context.Context) error {
					t, err := c.CreateToken(ctx, api.NewToken{Name: *name, User: *user, Expires: *expires})
					if err != nil {
						return err
					}
					printResult(cf, stdout, t, "Created token %d (%s) for %s. It is shown only this once:\n\n    %s\n\nexpires: %s\n",
						t.ID, t.Name, t.User, t.Token, when(t.ExpiresAt, "never"))
					return nil
				})
			}},
			{[]string{"list", "ls"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("token list", "token list [--user U]", "Lists your API tokens (an admin: --user's); never their secrets.", stdout, stderr)
				user := fs.String("user", "", "list this `user`'s tokens (admins only)")
				return listCmd(fs, args, stdout, stderr, func(c *api.Client, ctx context.Context) ([]api.APIToken, error) {
					return c.Tokens(ctx, *user)
				}, "ID\tNAME\tUSER\tCREATED\tEXPIRES\tREVOKED", func(w io.Writer, t api.APIToken) {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.User, t.CreatedAt.Local().Format(time.DateTime),
						when(t.ExpiresAt, "never"), when(t.RevokedAt, "-"))
				})
			}},
			{[]string{"revoke"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("token revoke", "token revoke ID", "Revokes one of your API tokens (an admin: anyone's); it is refused at once.", stdout, stderr)
				cf := addClientFlags(fs)
				return clientCall(fs, cf, args, stdout, stderr, 1, "one token ID", func(c *api.Client, ctx context.Context) error {
					id, ok := parseID(fs.Arg(0), stderr, "token revoke")
					if !ok {
						return fmt.Errorf("token ID %q: want a positive number", fs.Arg(0))
					}
					t, err := c.RevokeToken(ctx, id)
					if err != nil {
						return err
					}
					printResult(cf, stdout, t, "revoked token %d (%s) of %s\n", t.ID, t.Name, t.User)
					return nil
				})
			}},
		}, args, stdout, stderr)
}

func groupCmd(args []string, stdout, stderr io.Writer) int {
	return dispatch("group", "gantry group add GROUP USER... | rm GROUP [USER...] | list",
		`A group is a set of users that roles can be granted to ('gantry role grant
REPO ROLE --group GROUP'). 'group add' creates the group if needed; 'group rm'
removes the users named, or the whole group with its roles. Admins only.`,
		[]subcommand{
			{[]string{"add"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("group add", "group add GROUP USER...", "Adds users to a group, creating it.", stdout, stderr)
				cf := addClientFlags(fs)
				return clientCall(fs, cf, args, stdout, stderr, -1, "GROUP and the USERs to add", func(c *api.Client, ctx context.Context) error {
					g, err := c.AddToGroup(ctx, fs.Arg(0), fs.Args()[1:])
					if err != nil {
						return err
					}
					printResult(cf, stdout, g, "group %s: %s\n", g.Name, strings.Join(g.Members, " "))
					return nil
				})
			}},
			{[]string{"rm", "remove"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("group rm", "group rm GROUP [USER...]",
					"Removes users from a group; with no USER, removes the group and its roles.", stdout, stderr)
				cf := addClientFlags(fs)
				return clientCall(fs, cf, args, stdout, stderr, -1, "GROUP, and the USERs to remove", func(c *api.Client, ctx context.Context) error {
					if fs.NArg() == 1 {
						if err := c.DeleteGroup(ctx, fs.Arg(0)); err != nil {
							return err
						}
						fmt.Fprintf(stdout, "removed group %s\n", fs.Arg(0))
						return nil
					}
					g, err := c.RemoveFromGroup(ctx, fs.Arg(0), fs.Args()[1:])
					if err != nil {
						return err
					}
					printResult(cf, stdout, g, "group %s: %s\n", g.Name, strings.Join(g.Members, " "))
					return nil
				})
			}},
			{[]string{"list", "ls"}, func(args []string, stdout, stderr io.Writer) int {
				return listCmd(newFlagSet("group list", "group list", "Lists groups with their members.", stdout, stderr),
					args, stdout, stderr, (*api.Client).Groups, "GROUP\tMEMBERS", func(w io.Writer, g api.Group) {
						fmt.Fprintf(w, "%s\t%s\n", g.Name, strings.Join(g.Members, " "))
					})
			}},
		}, args, stdout, stderr)
}

const rolesAbout = `Roles are granted per repo (OWNER/NAME, or '*' for every repo) to a user or
a group, each including the ones before it:

  viewer      read builds, logs, artifacts, releases and environments
  developer   trigger, cancel and retry builds; deploy, promote, roll back
  maintainer  repo settings and secrets; see the repo's roles
  admin       everything on the repo, and grant roles on it

An admin user may do everything everywhere. A request someone may not make
gets 403 with what was missing, and changes nothing.`

func roleCmd(args []string, stdout, stderr io.Writer) int {
	subject := func(fs *flag.FlagSet) (user, group *string) {
		return fs.String("user", "", "the `user` to grant to"), fs.String("group", "", "the `group` to grant to")
	}
	return dispatch("role", "gantry role grant REPO ROLE --user U|--group G | revoke REPO --user U|--group G | list [REPO]", rolesAbout,
		[]subcommand{
			{[]string{"grant"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("role grant", "role grant REPO ROLE --user U|--group G",
					"Gives a user or group ROLE on REPO ('*': every repo), replacing the role they had there.\n\n"+rolesAbout, stdout, stderr)
				cf := addClientFlags(fs)
				user, group := subject(fs)
				return clientCall(fs, cf, args, stdout, stderr, 2, "REPO and ROLE", func(c *api.Client, ctx context.Context) error {
					g, err := c.Grant(ctx, api.Grant{Repo: fs.Arg(0), Role: fs.Arg(1), User: *user, Group: *group})
					if err != nil {
						return err
					}
					printResult(cf, stdout, g, "%s is now %s on %s\n", subjectName(*g), g.Role, g.Repo)
					return nil
				})
			}},
			{[]string{"revoke"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("role revoke", "role revoke REPO --user U|--group G", "Takes a user's or group's role on REPO away.", stdout, stderr)
				cf := addClientFlags(fs)
				user, group := subject(fs)
				return clientCall(fs, cf, args, stdout, stderr, 1, "one REPO", func(c *api.Client, ctx context.Context) error {
					g := api.Grant{Repo: fs.Arg(0), User: *user, Group: *group}
					if err := c.RevokeGrant(ctx, g); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "%s has no role of its own on %s now\n", subjectName(g), g.Repo)
					return nil
				})
			}},
			{[]string{"list", "ls"}, func(args []string, stdout, stderr io.Writer) int {
				fs := newFlagSet("role list", "role list [REPO]", "Lists the roles on REPO, or on every repo you maintain.", stdout, stderr)
				fetch := func(c *api.Client, ctx context.Context) ([]api.Grant, error) { return c.Grants(ctx, fs.Arg(0)) }
				return listCmd(fs, args, stdout, stderr, fetch, "REPO\tSUBJECT\tROLE", func(w io.Writer, g api.Grant) {
					fmt.Fprintf(w, "%s\t%s\t%s\n", g.Repo, subjectName(g), g.Role)
				})
			}},
		}, args, stdout, stderr)
}

func subjectName(g api.Grant) string {
	if g.Group != "" {
		return "group " + g.Group
	}
	return "user " + g.User
}

func whoamiCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("whoami", "whoami", "Prints who your token acts for and your roles.", stdout, stderr)
	cf := addClientFlags(fs)
	return clientCall(fs, cf, args, stdout, stderr, 0, "no arguments", func(c *api.Client, ctx context.Context) error {
		w, err := c.Whoami(ctx)
		if err != nil {
			return err
		}
		if cf.json() {
			printJSON(stdout, w)
			return nil
		}
		role := "user"
		if w.Admin {
			role = "admin"
		}
		fmt.Fprintf(stdout, "%s (%s), token %q\n", w.User, role, w.Token)
		repos := make([]string, 0, len(w.Roles))
		for r := range w.Roles {
			repos = append(repos, r)
		}
		sort.Strings(repos)
		for _, r := range repos {
			fmt.Fprintf(stdout, "  %s on %s\n", w.Roles[r], r)
		}
		return nil
	})
}
