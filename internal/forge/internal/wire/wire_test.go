package wire

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/forge"
)

func TestChangedPaths(t *testing.T) {
	t.Parallel()
	none := []string{}
	tests := []struct {
		name    string
		commits []Commit
		want    []string
	}{
		{"no commits", nil, nil},
		{"empty list", []Commit{}, nil},
		{"union, sorted, deduplicated", []Commit{
			{Added: []string{"z.go", "a.go"}, Removed: none, Modified: []string{"m.go"}},
			{Added: none, Removed: []string{"a.go"}, Modified: []string{"m.go", "b/c.go"}},
		}, []string{"a.go", "b/c.go", "m.go", "z.go"}},
		{"commits touching nothing", []Commit{{Added: none, Removed: none, Modified: none}}, []string{}},
		{"a commit without a file list", []Commit{
			{Added: []string{"a"}, Removed: none, Modified: none},
			{Added: []string{"b"}, Modified: none},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ChangedPaths(tt.commits)
			if diff := cmp.Diff(tt.want, got); diff != "" || (got == nil) != (tt.want == nil) {
				t.Errorf("ChangedPaths(%v) = %#v, want %#v", tt.commits, got, tt.want)
			}
		})
	}
}

func TestSHA(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "", false},
		{"0000000000000000000000000000000000000000", "", false},
		{"0000000000000000000000000000000000000000000000000000000000000000", "", false},
		{"6113728f27ae82c7b1a177c8d03f9e96e0adf246", "6113728f27ae82c7b1a177c8d03f9e96e0adf246", false},
		{"d31df3425c5b", "d31df3425c5b", false},
		{"ABCDEF0", "ABCDEF0", false},
		{"abc123", "", true},
		{"main", "", true},
		{"--upload-pack=x", "", true},
		{"6113728f27ae82c7b1a177c8d03f9e96e0adf246 ", "", true},
		{"00000000000000000000000000000000000000000000000000000000000000001", "", true},
	}
	for _, tt := range tests {
		got, err := SHA("payload", "after", tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("SHA(%q) = %q, %v, want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, forge.ErrMalformed) {
			t.Errorf("SHA(%q) error = %v, want ErrMalformed", tt.in, err)
		}
	}
}

func TestSplitRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref  string
		kind forge.Kind
		name string
		ok   bool
	}{
		{"refs/heads/main", forge.Push, "main", true},
		{"refs/heads/release/1.x", forge.Push, "release/1.x", true},
		{"refs/tags/v1.0.0", forge.Tag, "v1.0.0", true},
		{"refs/heads/", "", "", false},
		{"refs/notes/commits", "", "", false},
		{"refs/pull/1/head", "", "", false},
		{"main", "", "", false},
	}
	for _, tt := range tests {
		kind, name, ok := SplitRef(tt.ref)
		if kind != tt.kind || name != tt.name || ok != tt.ok {
			t.Errorf("SplitRef(%q) = %q, %q, %v, want %q, %q, %v", tt.ref, kind, name, ok, tt.kind, tt.name, tt.ok)
		}
	}
}

func TestName(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"issue_comment", "issue_comment"},
		{"Note Hook", "Note Hook"},
		{"pullrequest:fulfilled", "pullrequest:fulfilled"},
		{"refs/notes/commits", "refs/notes/commits"},
		{"", `""`},
		{"a\nb", `"a\nb"`},
		{"\x1b[31mred", `"\x1b[31mred"`},
	}
	for _, tt := range tests {
		if got := Name(tt.in); got != tt.want {
			t.Errorf("Name(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Name(string(make([]byte, 1000))); len(got) > 300 {
		t.Errorf("Name(1000 bytes) = %d bytes, want it cut short", len(got))
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	var v struct {
		Ref string `json:"ref"`
	}
	for _, body := range []string{"", "  ", "null", "[]", `"x"`, "1", "{", `{"ref":1}`, `{"ref":"a"} trailing`} {
		if err := Decode("payload", []byte(body), &v); !errors.Is(err, forge.ErrMalformed) {
			t.Errorf("Decode(%q) = %v, want ErrMalformed", body, err)
		}
	}
	if err := Decode("payload", []byte(" \n{\"ref\":\"a\"}\n"), &v); err != nil || v.Ref != "a" {
		t.Errorf("Decode(object) = %v, ref %q, want nil, a", err, v.Ref)
	}
}

func TestFirstHeader(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set("B", "b")
	h.Set("A", "")
	if name, v := FirstHeader(h, "A", "B"); name != "B" || v != "b" {
		t.Errorf("FirstHeader(A empty, B) = %q, %q, want B, b", name, v)
	}
	if name, v := FirstHeader(http.Header{}, "A", "B"); name != "A" || v != "" {
		t.Errorf("FirstHeader(none) = %q, %q, want A, empty", name, v)
	}
}
