package spec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// The JSON Schema in schema/ is what editors check a pipeline file against;
// Parse is what Gantry checks it against. These tests keep the two in step:
// every example and documented pipeline passes both, every kind of mapping
// in Keys has the same keys in the schema, and a table of broken files is
// refused by both.

const (
	schemaPath = "../../schema/gantry.schema.json"
	docsPath   = "../../docs/pipeline.md"
	examplesGl = "../../examples/*.yml"
)

// compileSchema compiles the pipeline schema, checking it against the
// draft 2020-12 meta-schema on the way.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc := readSchemaDoc(t)
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaPath, doc); err != nil {
		t.Fatalf("AddResource(%s) = %v, want nil", schemaPath, err)
	}
	sch, err := c.Compile(schemaPath)
	if err != nil {
		t.Fatalf("Compile(%s) = %v, want nil", schemaPath, err)
	}
	return sch
}

func readSchemaDoc(t *testing.T) any {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("UnmarshalJSON(%s) = %v, want nil", schemaPath, err)
	}
	return doc
}

// yamlToJSON decodes a YAML document into the JSON value an editor's schema
// validator sees: mapping keys become strings, numbers json.Number.
func yamlToJSON(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(normalise(v))
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

func normalise(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = normalise(x)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[fmt.Sprint(k)] = normalise(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalise(x)
		}
		return out
	}
	return v
}

// validate checks a pipeline file against the schema.
func validate(sch *jsonschema.Schema, data []byte) error {
	v, err := yamlToJSON(data)
	if err != nil {
		return fmt.Errorf("yaml to json: %w", err)
	}
	return sch.Validate(v)
}

// pipelineSource is a pipeline file found in the repository.
type pipelineSource struct {
	name string // file, or file:line for a block of the docs
	data []byte
}

// docBlocks returns the ```yaml blocks of the format documentation. A block
// whose info string is `yaml fragment` shows part of a file and is skipped;
// every other yaml block must be a complete pipeline.
func docBlocks(t *testing.T) []pipelineSource {
	t.Helper()
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []pipelineSource
	var cur *pipelineSource
	var body strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			info := strings.Fields(strings.TrimPrefix(trimmed, "```"))
			if len(info) > 0 && (info[0] == "yaml" || info[0] == "yml") && !slices.Contains(info[1:], "fragment") {
				cur = &pipelineSource{name: fmt.Sprintf("docs/pipeline.md:%d", line+1)}
				body.Reset()
			} else if len(info) > 0 || trimmed == "```" {
				// Some other block: skip to its end.
				for sc.Scan() {
					line++
					if strings.TrimSpace(sc.Text()) == "```" {
						break
					}
				}
			}
		case cur != nil && trimmed == "```":
			cur.data = []byte(body.String())
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(text)
			body.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s: unterminated code block", cur.name)
	}
	return out
}

func exampleFiles(t *testing.T) []pipelineSource {
	t.Helper()
	paths, err := filepath.Glob(examplesGl)
	if err != nil {
		t.Fatal(err)
	}
	var out []pipelineSource
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pipelineSource{name: "examples/" + filepath.Base(p), data: data})
	}
	return out
}

func TestSchemaAcceptsExamplesAndDocs(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	examples, docs := exampleFiles(t), docBlocks(t)
	if len(examples) < 4 {
		t.Errorf("len(examples) = %d, want at least 4 files matching %s", len(examples), examplesGl)
	}
	if len(docs) < 5 {
		t.Errorf("len(docBlocks) = %d, want at least 5 complete pipelines in %s", len(docs), docsPath)
	}
	for _, src := range append(examples, docs...) {
		t.Run(src.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse(src.name, src.data); err != nil {
				t.Errorf("Parse(%s) = %v, want nil", src.name, err)
			}
			if err := validate(sch, src.data); err != nil {
				t.Errorf("Validate(%s) = %v, want nil", src.name, err)
			}
		})
	}
}

// TestSchemaAcceptsWhatParseAccepts checks the shorthands and the loose
// scalars the parser takes, so an editor never flags a file Gantry runs.
func TestSchemaAcceptsWhatParseAccepts(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	tests := []struct {
		name, src string
	}{
		{"on scalar", "on: push\njobs: {a: {steps: [x]}}"},
		{"on list", "on: [push, pull_request]\njobs: {a: {steps: [x]}}"},
		{"on empty list", "on: []\njobs: {a: {steps: [x]}}"},
		{"on null events", "on: {push: , pull_request: }\njobs: {a: {steps: [x]}}"},
		{"globs as a single value", "on: {push: {branches: main, tags: v*, paths-ignore: '**/*.md'}}\njobs: {a: {steps: [x]}}"},
		{"schedule", "on: {schedule: [{cron: '*/15 9-17 * * MON-FRI'}, {cron: '@every 6h'}, {cron: 'TZ=Europe/Paris @daily'}]}\njobs: {a: {steps: [x]}}"},
		{"bare step", "jobs: {a: {steps: [make test]}}"},
		{"step as a number", "jobs: {a: {steps: [42]}}"},
		{"needs and runs-on as a single value", "jobs: {a: {steps: [x]}, b: {needs: a, runs-on: linux, locks: db, secrets: TOKEN, steps: [x]}}"},
		{"numbers and booleans as text", "env: {CGO_ENABLED: 0, DEBUG: true, RATIO: 1.5, EMPTY: ''}\njobs: {a: {image: 3, steps: [{run: x, name: 1}]}}"},
		{"if as a boolean", "jobs: {a: {if: false, steps: [{run: x, if: true}]}}"},
		{"if wrapped in ${{ }}", "jobs: {a: {if: '${{ branch == \"main\" }}', steps: [x]}}"},
		{"retry as quoted text", "jobs: {a: {steps: [{run: x, retry: '3'}, {run: x, retry: 10}, {run: x, retry: 0}]}}"},
		{"durations", "jobs: {a: {timeout: 1h30m, steps: [{run: x, timeout: 1.5s}, {run: x, timeout: 250ms}, {run: x, timeout: .5h}]}}"},
		{"working-directory", "jobs: {a: {steps: [{run: x, working-directory: a/b..c/d}]}}"},
		{"matrix scalar axis", "jobs: {a: {matrix: {go: 1.23, os: [linux, darwin]}, steps: [x]}}"},
		{"matrix include only", "jobs: {a: {matrix: {include: [{go: '1.23', extra: on}]}, steps: [x]}}"},
		{"matrix with exclude", "jobs: {a: {matrix: {go: [1, 2], exclude: [{go: 1}], include: []}, steps: [x]}}"},
		{"services", "jobs: {a: {services: {db: {image: postgres, command: postgres, ready: {}}}, steps: [x]}}"},
		{"environments only", "environments: {prod: {rollout: {hosts: web}}}"},
		{"approvals as text", "jobs: {a: {steps: [x]}}\nenvironments: {prod: {approvals: {required: '2', author-may-approve: 'true'}, steps: [x]}}"},
		{"approvals empty", "jobs: {a: {steps: [x]}}\nenvironments: {prod: {approvals: {}, steps: [x]}}"},
		{"empty deploy with promote-from", "jobs: {a: {steps: [x]}}\nenvironments: {s: {steps: [x]}, p: {deploy: {}, promote-from: s, steps: [x]}}"},
		{"freeze with an empty reason", "jobs: {a: {steps: [x]}}\nenvironments: {p: {freeze: [{cron: '0 0 * * 6', duration: 48h, reason: ''}], steps: [x]}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse("x.yml", []byte(tt.src)); err != nil {
				t.Fatalf("Parse(%q) = %v, want nil (fix the test case)", tt.src, err)
			}
			if err := validate(sch, []byte(tt.src)); err != nil {
				t.Errorf("Validate(%q) = %v, want nil: the schema is stricter than Parse", tt.src, err)
			}
		})
	}
}

func TestSchemaAndParseRejectInvalid(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	tests := []struct {
		name string
		src  string
		// parseErr is part of the message Parse must give, so each case
		// fails for the reason it is here for.
		parseErr string
	}{
		{"unknown top-level key", "job: {a: {steps: [x]}}", `unknown key "job"`},
		{"unknown job key", "jobs: {a: {step: [x]}}", `unknown key "step"`},
		{"unknown step key", "jobs: {a: {steps: [{run: x, shell: bash}]}}", `unknown key "shell"`},
		{"unknown push key", "on: {push: {branch: main}}\njobs: {a: {steps: [x]}}", `unknown key "branch"`},
		{"unknown event", "on: [push, merge_request]\njobs: {a: {steps: [x]}}", `unknown event "merge_request"`},
		{"schedule as an event", "on: schedule\njobs: {a: {steps: [x]}}", `unknown event "schedule"`},
		{"unknown service key", "jobs: {a: {services: {db: {image: pg, ports: [5432]}}, steps: [x]}}", `unknown key "ports"`},
		{"unknown environment key", "jobs: {a: {steps: [x]}}\nenvironments: {p: {needs: [a], steps: [x]}}", `unknown key "needs"`},
		{"unknown rollout key", "jobs: {a: {steps: [x]}}\nenvironments: {p: {rollout: {hosts: web, canary: 1}}}", `unknown key "canary"`},
		{"no jobs", "env: {A: b}", "no jobs"},
		{"empty jobs", "jobs: {}", "empty"},
		{"job without steps", "jobs: {a: {image: alpine}}", "no steps"},
		{"empty steps", "jobs: {a: {steps: []}}", "empty"},
		{"steps as a string", "jobs: {a: {steps: make}}", "want a list of steps"},
		{"step without run", "jobs: {a: {steps: [{name: x}]}}", `no "run"`},
		{"blank step", "jobs: {a: {steps: ['  ']}}", "empty command"},
		{"null step", "jobs: {a: {steps: [null]}}", "want a mapping"},
		{"env as a list", "jobs: {a: {env: [A=b], steps: [x]}}", "want a mapping"},
		{"env value as a list", "env: {A: [b]}\njobs: {a: {steps: [x]}}", "want a single value"},
		{"env name", "env: {A-B: c}\njobs: {a: {steps: [x]}}", "not a valid variable name"},
		{"timeout as a number", "jobs: {a: {timeout: 10, steps: [x]}}", "invalid duration"},
		{"timeout without a unit", "jobs: {a: {steps: [{run: x, timeout: '10'}]}}", "invalid duration"},
		{"timeout zero", "jobs: {a: {timeout: 0s, steps: [x]}}", "invalid duration"},
		{"timeout negative", "jobs: {a: {timeout: -1m, steps: [x]}}", "invalid duration"},
		{"timeout unknown unit", "jobs: {a: {timeout: 1d, steps: [x]}}", "invalid duration"},
		{"retry 11", "jobs: {a: {steps: [{run: x, retry: 11}]}}", "from 0 to 10"},
		{"retry negative", "jobs: {a: {steps: [{run: x, retry: -1}]}}", "from 0 to 10"},
		{"retry as a word", "jobs: {a: {steps: [{run: x, retry: twice}]}}", "from 0 to 10"},
		{"retry 11 as text", "jobs: {a: {steps: [{run: x, retry: '11'}]}}", "from 0 to 10"},
		{"bad job name", "jobs: {-a: {steps: [x]}}", "not a valid job name"},
		{"job name with a space", "jobs: {'my job': {steps: [x]}}", "not a valid job name"},
		{"bad needs name", "jobs: {a: {steps: [x]}, b: {needs: ['a b'], steps: [x]}}", "not a valid name"},
		{"needs as a mapping", "jobs: {a: {steps: [x]}, b: {needs: {a: 1}, steps: [x]}}", "want a list"},
		{"bad service name", "jobs: {a: {services: {'my db': {image: pg}}, steps: [x]}}", "not a valid service name"},
		{"service without image", "jobs: {a: {services: {db: {env: {A: b}}}, steps: [x]}}", "image is required"},
		{"bad environment name", "jobs: {a: {steps: [x]}}\nenvironments: {.prod: {steps: [x]}}", "not a valid environment name"},
		{"bad axis name", "jobs: {a: {matrix: {'go version': [1]}, steps: [x]}}", "not a valid axis name"},
		{"empty axis", "jobs: {a: {matrix: {go: []}, steps: [x]}}", "at least one value"},
		{"empty matrix", "jobs: {a: {matrix: {}, steps: [x]}}", "empty"},
		{"matrix of excludes only", "jobs: {a: {matrix: {exclude: []}, steps: [x]}}", "empty"},
		{"include not a list", "jobs: {a: {matrix: {go: [1], include: {go: 2}}, steps: [x]}}", "want a list of mappings"},
		{"bad secret name", "jobs: {a: {secrets: [my-token], steps: [x]}}", "not a valid variable name"},
		{"if as a number", "jobs: {a: {if: 1, steps: [x]}}", "mismatched types"},
		{"empty if", "jobs: {a: {if: '', steps: [x]}}", "empty condition"},
		{"absolute working-directory", "jobs: {a: {steps: [{run: x, working-directory: /tmp}]}}", "inside the workspace"},
		{"working-directory with ..", "jobs: {a: {steps: [{run: x, working-directory: a/../..}]}}", "inside the workspace"},
		{"cron with four fields", "on: {schedule: [{cron: '0 * * *'}]}\njobs: {a: {steps: [x]}}", "invalid cron"},
		{"cron unknown descriptor", "on: {schedule: [{cron: '@fortnightly'}]}\njobs: {a: {steps: [x]}}", "invalid cron"},
		{"schedule without cron", "on: {schedule: [{}]}\njobs: {a: {steps: [x]}}", "cron is required"},
		{"schedule as a mapping", "on: {schedule: {cron: '@daily'}}\njobs: {a: {steps: [x]}}", "want a list"},
		{"environment without steps", "jobs: {a: {steps: [x]}}\nenvironments: {p: {url: https://x}}", "no steps"},
		{"rollout without hosts", "jobs: {a: {steps: [x]}}\nenvironments: {p: {rollout: {batch: 2}}}", "hosts is required"},
		{"batch zero", "jobs: {a: {steps: [x]}}\nenvironments: {p: {rollout: {hosts: web, batch: 0}}}", "from 1 to 10000"},
		{"health without url", "jobs: {a: {steps: [x]}}\nenvironments: {p: {rollout: {hosts: web, health: {retries: 3}}}}", "url or run is required"},
		{"required 101", "jobs: {a: {steps: [x]}}\nenvironments: {p: {approvals: {required: 101}, steps: [x]}}", "from 0 to 100"},
		{"author-may-approve yes", "jobs: {a: {steps: [x]}}\nenvironments: {p: {approvals: {author-may-approve: yes}, steps: [x]}}", "want true or false"},
		{"freeze without duration", "jobs: {a: {steps: [x]}}\nenvironments: {p: {freeze: [{cron: '0 0 * * 6'}], steps: [x]}}", "both required"},
		{"freeze as a mapping", "jobs: {a: {steps: [x]}}\nenvironments: {p: {freeze: {cron: '0 0 * * 6', duration: 48h}, steps: [x]}}", "want a list"},
		{"deploy as a string", "jobs: {a: {steps: [x]}}\nenvironments: {p: {deploy: main, steps: [x]}}", "want a mapping"},
		{"deploy.branch with promote-from", "jobs: {a: {steps: [x]}}\nenvironments: {s: {steps: [x]}, p: {deploy: {branch: main}, promote-from: s, steps: [x]}}", "exclude each other"},
		{"bad promote-from name", "jobs: {a: {steps: [x]}}\nenvironments: {p: {promote-from: 'my env', steps: [x]}}", "not an environment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("x.yml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.parseErr) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tt.src, err, tt.parseErr)
			}
			if err := validate(sch, []byte(tt.src)); err == nil {
				t.Errorf("Validate(%q) = nil, want an error: the schema is looser than Parse", tt.src)
			}
		})
	}
}

// TestSchemaMatchesKeys is the drift test: for every kind of mapping in
// Keys, $defs/<kind> in the schema is a closed object whose properties are
// exactly Keys[kind]. A key added to the parser without the schema, or the
// reverse, fails here.
func TestSchemaMatchesKeys(t *testing.T) {
	t.Parallel()
	root, ok := readSchemaDoc(t).(map[string]any)
	if !ok {
		t.Fatalf("schema is not a JSON object")
	}
	if got, want := root["$ref"], "#/$defs/pipeline"; got != want {
		t.Errorf("schema $ref = %v, want %q", got, want)
	}
	defs, _ := root["$defs"].(map[string]any)

	// openDefs are the $defs with properties that are not kinds of Keys:
	// mappings whose keys are the user's own plus a few reserved ones.
	openDefs := map[string][]string{
		"matrix": {"exclude", "include"}, // axis names are free
	}

	for kind, keys := range Keys {
		def, ok := defs[kind].(map[string]any)
		if !ok {
			t.Errorf("schema $defs[%q] missing, want an object schema for spec.Keys[%q]", kind, kind)
			continue
		}
		if got := def["additionalProperties"]; got != false {
			t.Errorf("schema $defs[%q].additionalProperties = %v, want false: Parse rejects unknown keys", kind, got)
		}
		if got := def["type"]; got != "object" {
			t.Errorf("schema $defs[%q].type = %v, want \"object\"", kind, got)
		}
		got := propertyNames(def)
		want := slices.Sorted(slices.Values(keys))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("schema $defs[%q] properties = %v, want spec.Keys[%q] = %v (-want +got):\n%s", kind, got, kind, want, diff)
		}
	}
	for name, raw := range defs {
		def, _ := raw.(map[string]any)
		if _, isKind := Keys[name]; isKind {
			continue
		}
		if def["additionalProperties"] == false {
			t.Errorf("schema $defs[%q] is a closed mapping, but spec.Keys has no kind %q", name, name)
		}
		if _, has := def["properties"]; has {
			want, listed := openDefs[name]
			if got := propertyNames(def); !listed || !slices.Equal(got, want) {
				t.Errorf("schema $defs[%q] properties = %v, want none, or an entry in openDefs (have %v)", name, got, want)
			}
		}
	}

	// Every closed object lives in $defs under its kind, so that the loop
	// above sees it; constraints inside a definition (anyOf, not) may only
	// name the definition's own properties.
	walkSchema(root, "#", "", func(path, def string, s map[string]any) {
		if s["additionalProperties"] == false && path != "#/$defs/"+def {
			t.Errorf("schema %s: a closed object outside $defs/<kind>; move it to $defs and add its kind to spec.Keys", path)
		}
		props, ok := s["properties"].(map[string]any)
		if !ok || def == "" || path == "#/$defs/"+def {
			return
		}
		own := propertyNames(defs[def].(map[string]any))
		for p := range props {
			if !slices.Contains(own, p) {
				t.Errorf("schema %s: property %q is not a property of $defs/%s %v", path, p, def, own)
			}
		}
	})
}

// TestSchemaConstants checks the values the schema copies from this package.
func TestSchemaConstants(t *testing.T) {
	t.Parallel()
	root := readSchemaDoc(t).(map[string]any)
	defs := root["$defs"].(map[string]any)
	get := func(path ...string) any {
		var v any = defs
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	tests := []struct {
		path []string
		want any
	}{
		{[]string{"name", "pattern"}, NamePattern.String()},
		{[]string{"envMap", "propertyNames", "pattern"}, envNamePattern.String()},
		{[]string{"secretName", "pattern"}, envNamePattern.String()},
	}
	for _, tt := range tests {
		if got := get(tt.path...); got != tt.want {
			t.Errorf("schema $defs/%s = %v, want %v", strings.Join(tt.path, "/"), got, tt.want)
		}
	}
	retry, _ := get("step", "properties", "retry", "anyOf").([]any)
	if len(retry) == 0 {
		t.Fatalf("schema $defs/step/properties/retry/anyOf missing")
	}
	if got := retry[0].(map[string]any)["maximum"]; fmt.Sprint(got) != fmt.Sprint(MaxRetry) {
		t.Errorf("schema retry maximum = %v, want MaxRetry = %d", got, MaxRetry)
	}
}

// TestSchemaDescriptions checks that an editor has a tooltip for every key.
func TestSchemaDescriptions(t *testing.T) {
	t.Parallel()
	root := readSchemaDoc(t).(map[string]any)
	walkSchema(root, "#", "", func(path, _ string, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for name, raw := range props {
			p, _ := raw.(map[string]any)
			if d, _ := p["description"].(string); d == "" && !isConstraint(path) {
				t.Errorf("schema %s/properties/%s: no description", path, name)
			}
		}
	})
	for name, raw := range root["$defs"].(map[string]any) {
		if d, _ := raw.(map[string]any)["description"].(string); d == "" {
			t.Errorf("schema $defs/%s: no description", name)
		}
	}
}

// TestSchemaKeywords checks the schema for misspelt keywords, which
// validators silently ignore.
func TestSchemaKeywords(t *testing.T) {
	t.Parallel()
	root := readSchemaDoc(t).(map[string]any)
	walkSchema(root, "#", "", func(path, _ string, s map[string]any) {
		for k := range s {
			if !schemaKeywords[k] {
				t.Errorf("schema %s: keyword %q is not one this schema uses; misspelt?", path, k)
			}
		}
	})
}

// isConstraint reports whether path is inside an applicator that only
// narrows properties declared elsewhere.
func isConstraint(path string) bool {
	return strings.Contains(path, "/anyOf/") || strings.Contains(path, "/not")
}

func propertyNames(def map[string]any) []string {
	props, _ := def["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// schemaKeywords are the keywords the schema uses.
var schemaKeywords = map[string]bool{
	"$schema": true, "$id": true, "$ref": true, "$defs": true, "$comment": true,
	"title": true, "description": true, "default": true,
	"type": true, "enum": true, "pattern": true, "minimum": true, "maximum": true,
	"properties": true, "additionalProperties": true, "propertyNames": true,
	"required": true, "minProperties": true, "items": true, "minItems": true,
	"anyOf": true, "allOf": true, "not": true,
}

// walkSchema calls fn for every subschema, with its JSON pointer and the
// name of the $defs entry it is in ("" outside $defs).
func walkSchema(s map[string]any, path, def string, fn func(path, def string, s map[string]any)) {
	fn(path, def, s)
	for k, v := range s {
		switch k {
		case "$defs":
			for name, sub := range v.(map[string]any) {
				walkSchema(sub.(map[string]any), path+"/$defs/"+name, name, fn)
			}
		case "properties":
			for name, sub := range v.(map[string]any) {
				walkSchema(sub.(map[string]any), path+"/properties/"+name, def, fn)
			}
		case "additionalProperties", "items", "not", "propertyNames":
			if sub, ok := v.(map[string]any); ok {
				walkSchema(sub, path+"/"+k, def, fn)
			}
		case "anyOf", "allOf":
			for i, sub := range v.([]any) {
				walkSchema(sub.(map[string]any), fmt.Sprintf("%s/%s/%d", path, k, i), def, fn)
			}
		}
	}
}
