package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/gantry-ci/gantry/internal/api"
)

func lockCmd(args []string, stdout, stderr io.Writer) int {
	usage := "gantry lock add NAME --capacity N | list | rm NAME"
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	ctx := context.Background()
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, "usage: "+usage+`

A lock is a resource pool: a job with "locks: [NAME]" in the pipeline file
runs only while one of the lock's units is free, and holds it until it
finishes, is cancelled or loses its agent. Jobs take a lock in the order
they were queued: a later job never overtakes an earlier one.

Run 'gantry lock add --help' (or list, rm) for a subcommand's flags.`)
		return exitOK
	case "add":
		fs := newFlagSet("lock add", "lock add NAME --capacity N", "Creates a lock with N units.", stdout, stderr)
		cf := addClientFlags(fs)
		capacity := fs.Int("capacity", 1, "units: how many jobs may hold it at once (`N`)")
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one lock NAME", stderr) {
			return exitUsage
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		l, err := c.AddLock(ctx, api.NewLock{Name: fs.Arg(0), Capacity: *capacity})
		if err != nil {
			return fail(stderr, "lock add", err)
		}
		if cf.json() {
			printJSON(stdout, l)
		} else {
			fmt.Fprintf(stdout, "added lock %s with %d unit(s)\n", l.Name, l.Capacity)
		}
		return exitOK
	case "list", "ls":
		return listCmd(newFlagSet("lock list", "lock list", "Lists locks with the jobs that hold them.", stdout, stderr),
			args, stdout, stderr, (*api.Client).Locks, "NAME\tHELD\tHOLDERS", func(w io.Writer, l api.Lock) {
				var holders []string
				for _, h := range l.Holders {
					holders = append(holders, fmt.Sprintf("#%d %s", h.BuildID, h.Job))
				}
				fmt.Fprintf(w, "%s\t%d/%d\t%s\n", l.Name, len(l.Holders), l.Capacity, strings.Join(holders, ", "))
			})
	case "rm", "remove":
		fs := newFlagSet("lock rm", "lock rm NAME", "Removes a lock; jobs that name it wait until it exists again.", stdout, stderr)
		cf := addClientFlags(fs)
		if code, done := parseFlags(fs, args, stdout); done {
			return code
		}
		if !needArgs(fs, 1, "one lock NAME", stderr) {
			return exitUsage
		}
		c, ok := cf.client(stderr)
		if !ok {
			return exitUsage
		}
		if err := c.DeleteLock(ctx, fs.Arg(0)); err != nil {
			return fail(stderr, "lock rm", err)
		}
		fmt.Fprintf(stdout, "removed lock %s\n", fs.Arg(0))
		return exitOK
	}
	fmt.Fprintf(stderr, "gantry lock: unknown subcommand %q\nusage: %s\n", sub, usage)
	return exitUsage
}
