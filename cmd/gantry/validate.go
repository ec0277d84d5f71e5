package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/spec"
)

const validateAbout = `Checks pipeline files without running anything. Every problem is printed
as FILE:LINE:COL: message on stderr; the exit code is 1 if any file is
invalid. With no FILE, checks the pipeline file gantry run would use.`

// validation is one file's verdict in --output json.
type validation struct {
	File   string            `json:"file"`
	Valid  bool              `json:"valid"`
	Jobs   int               `json:"jobs"`
	Envs   int               `json:"environments"`
	Errors []validationError `json:"errors"`
}

type validationError struct {
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
}

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "validate [flags] [FILE...]", validateAbout, stdout, stderr)
	output := fs.String("output", "text", "output `format`: text, or json for one verdict per file")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "gantry validate: --output must be text or json, not %q\n", *output)
		return exitUsage
	}
	files := fs.Args()
	if len(files) == 0 {
		cwd, err := os.Getwd()
		if err != nil {
			fmt.Fprintf(stderr, "gantry validate: %v\n", err)
			return exitFailed
		}
		root := ""
		if r, _, err := git.FindRoot(cwd); err == nil {
			root = r
		}
		p, err := findPipeline("", cwd, root)
		if err != nil {
			fmt.Fprintf(stderr, "gantry validate: %v\n", err)
			return exitFailed
		}
		files = []string{displayPath(p, cwd)}
	}
	code := exitOK
	var verdicts []validation
	for _, f := range files {
		v := validation{File: f, Errors: []validationError{}}
		data, err := os.ReadFile(f)
		if err != nil {
			v.Errors = append(v.Errors, validationError{Message: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))})
			fmt.Fprintf(stderr, "%s: cannot read: %v\n", f, errors.Unwrap(err))
			code = exitFailed
			verdicts = append(verdicts, v)
			continue
		}
		p, err := spec.Parse(f, data)
		var list spec.ErrorList
		switch {
		case err == nil:
			v.Valid, v.Jobs, v.Envs = true, len(p.Jobs), len(p.Environments)
			if *output == "text" {
				fmt.Fprintf(stdout, "%s: ok (%s, %s)\n", f, plural(len(p.Jobs), "job"), plural(len(p.Environments), "environment"))
			}
		case errors.As(err, &list):
			code = exitFailed
			for _, e := range list {
				v.Errors = append(v.Errors, validationError{Line: e.Line, Col: e.Col, Message: e.Msg})
			}
			if *output == "text" {
				fmt.Fprintln(stderr, err)
			}
		default:
			code = exitFailed
			v.Errors = append(v.Errors, validationError{Message: err.Error()})
			fmt.Fprintln(stderr, err)
		}
		verdicts = append(verdicts, v)
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(verdicts)
	}
	return code
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
