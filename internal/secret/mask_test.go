package secret

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMask(t *testing.T) {
	t.Parallel()
	key := "-----BEGIN KEY-----\nMIIEabc123\r\nxyz789==\n-----END KEY-----\n"
	tests := []struct {
		name   string
		values []string
		in     string
		want   string
	}{
		{
			name:   "value",
			values: []string{"s3cr3t"},
			in:     "token=s3cr3t; again s3cr3t\n",
			want:   "token=***; again ***\n",
		},
		{
			name:   "value at both ends",
			values: []string{"s3cr3t"},
			in:     "s3cr3t middle s3cr3t",
			want:   "*** middle ***",
		},
		{
			name:   "no occurrence",
			values: []string{"s3cr3t"},
			in:     "s3cr3 3cr3t s3cr4t S3CR3T\n",
			want:   "s3cr3 3cr3t s3cr4t S3CR3T\n",
		},
		{
			name:   "base64 without padding needed",
			values: []string{"s3cr3t"},
			in:     "Authorization: czNjcjN0\n",
			want:   "Authorization: ***\n",
		},
		{
			name:   "base64 padded and unpadded",
			values: []string{"s3cr3t1"},
			in:     "a czNjcjN0MQ== b czNjcjN0MQ c\n",
			want:   "a *** b *** c\n",
		},
		{
			name:   "base64 standard and URL-safe alphabets",
			values: []string{"???>>>?"},
			in:     "std Pz8/Pj4+Pw== url Pz8_Pj4-Pw== raw Pz8/Pj4+Pw rawurl Pz8_Pj4-Pw\n",
			want:   "std *** url *** raw *** rawurl ***\n",
		},
		{
			name:   "base64 of the untrimmed value",
			values: []string{"s3cr3t\n"},
			in:     "echo czNjcjN0Cg== | base64 -d\n",
			want:   "echo *** | base64 -d\n",
		},
		{
			name:   "base64 of the value and a newline, as echo | base64 prints it",
			values: []string{"s3cr3t value/with@chars"},
			in:     "czNjcjN0IHZhbHVlL3dpdGhAY2hhcnMK\nczNjcjN0IHZhbHVlL3dpdGhAY2hhcnM=\n",
			want:   "***\n***\n",
		},
		{
			name:   "trimmed value keeps the newline",
			values: []string{"  s3cr3t\n"},
			in:     "s3cr3t\nnext\n",
			want:   "***\nnext\n",
		},
		{
			name:   "URL query and path escaped",
			values: []string{"p@ss w/rd&x=1"},
			in:     "GET /login?pw=p%40ss+w%2Frd%26x%3D1 then /u/p@ss%20w%2Frd&x=1 raw p@ss w/rd&x=1\n",
			want:   "GET /login?pw=*** then /u/*** raw ***\n",
		},
		{
			name:   "multi-line value whole",
			values: []string{key},
			in:     "key:\n" + key + "done\n",
			want:   "key:\n***\ndone\n",
		},
		{
			name:   "multi-line value line by line with CRLF",
			values: []string{key},
			in:     "-----BEGIN KEY-----\r\nMIIEabc123\r\nxyz789==\r\n-----END KEY-----\r\n",
			want:   "***\r\n***\r\n***\r\n***\r\n",
		},
		{
			name:   "multi-line value single line",
			values: []string{key},
			in:     "line 2 is MIIEabc123.\n",
			want:   "line 2 is ***.\n",
		},
		{
			name:   "longer value containing a shorter one",
			values: []string{"abc", "xabcdefx"},
			in:     "1 xabcdefx 2 abc 3 xabcdef\n",
			want:   "1 *** 2 *** 3 x***def\n",
		},
		{
			name:   "overlapping values merge",
			values: []string{"abcdef", "defghi"},
			in:     "<abcdefghi>",
			want:   "<***>",
		},
		{
			name:   "overlapping occurrences of one value merge",
			values: []string{"abab"},
			in:     "<ababab>",
			want:   "<***>",
		},
		{
			name:   "adjacent occurrences stay apart",
			values: []string{"s3cr3t"},
			in:     "s3cr3ts3cr3t",
			want:   "******",
		},
		{
			name:   "short values ignored",
			values: []string{"", "a", "ab", " x ", "\n\nab\n", "\t"},
			in:     "a ab x abc\n",
			want:   "a ab x abc\n",
		},
		{
			name:   "three bytes is enough",
			values: []string{"abc"},
			in:     "a ab abc\n",
			want:   "a ab ***\n",
		},
		{
			name:   "regex metacharacters are literal",
			values: []string{`a.b*c(d)[e]$^|\`},
			in:     `axb*c(d)[e]$^|\ a.b*c(d)[e]$^|\ a.bbc(d)[e]$^|\`,
			want:   `axb*c(d)[e]$^|\ *** a.bbc(d)[e]$^|\`,
		},
		{
			name:   "regex metacharacters URL escaped",
			values: []string{`a.b*c(d)[e]$^|\`},
			in:     `?q=a.b%2Ac%28d%29%5Be%5D%24%5E%7C%5C /a.b%2Ac%28d%29%5Be%5D$%5E%7C%5C`,
			want:   `?q=*** /***`,
		},
		{
			name:   "duplicate values",
			values: []string{"s3cr3t", "s3cr3t", " s3cr3t "},
			in:     "s3cr3t",
			want:   "***",
		},
		{
			name:   "no values",
			values: nil,
			in:     "s3cr3t",
			want:   "s3cr3t",
		},
		{
			name:   "empty input",
			values: []string{"s3cr3t"},
			in:     "",
			want:   "",
		},
		{
			name:   "binary bytes",
			values: []string{"\x00\xff\x00"},
			in:     "\xff\x00\xff\x00\xff",
			want:   "\xff***\xff",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := NewMasker(tt.values)
			in := []byte(tt.in)
			got := string(m.Mask(in))
			if got != tt.want {
				t.Errorf("NewMasker(%q).Mask(%q) = %q, want %q", tt.values, tt.in, got, tt.want)
			}
			if string(in) != tt.in {
				t.Errorf("NewMasker(%q).Mask(%q) modified its input to %q", tt.values, tt.in, in)
			}
		})
	}
}

func TestMaskReturnsCopy(t *testing.T) {
	t.Parallel()
	for _, values := range [][]string{nil, {"s3cr3t"}} {
		in := []byte("nothing to mask")
		got := NewMasker(values).Mask(in)
		got[0] = 'N'
		if in[0] != 'n' {
			t.Errorf("NewMasker(%q).Mask(%q) returned its input, want a copy", values, "nothing to mask")
		}
	}
}

func TestNilMasker(t *testing.T) {
	t.Parallel()
	var m *Masker
	if got := string(m.Mask([]byte("s3cr3t"))); got != "s3cr3t" {
		t.Errorf("(*Masker)(nil).Mask(%q) = %q, want %q", "s3cr3t", got, "s3cr3t")
	}
	var buf bytes.Buffer
	w := m.NewWriter(&buf)
	if _, err := w.Write([]byte("s3cr3t")); err != nil {
		t.Fatalf("(*Masker)(nil).NewWriter(dst).Write: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("(*Masker)(nil).NewWriter(dst).Flush: %v", err)
	}
	if got := buf.String(); got != "s3cr3t" {
		t.Errorf("(*Masker)(nil) writer output = %q, want %q", got, "s3cr3t")
	}
}

func TestNewMaskerForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values []string
		want   []string
	}{
		{
			values: []string{"s3cr3t"},
			want:   []string{"czNjcjN0Cg==", "czNjcjN0Cg", "czNjcjN0", "s3cr3t"},
		},
		{
			values: []string{"???>>>?"},
			want: []string{
				"%3F%3F%3F%3E%3E%3E%3F",
				"Pz8/Pj4+Pw==",
				"Pz8/Pj4+Pwo=",
				"Pz8_Pj4-Pw==",
				"Pz8_Pj4-Pwo=",
				"Pz8/Pj4+Pwo",
				"Pz8_Pj4-Pwo",
				"Pz8/Pj4+Pw",
				"Pz8_Pj4-Pw",
				"???>>>?",
			},
		},
		{
			values: []string{"s3cr3t\n"},
			want: []string{
				"czNjcjN0Cg==",
				"czNjcjN0Cg",
				"czNjcjN0",
				"s3cr3t",
			},
		},
		{
			values: []string{"abc\r\nde\n fgh \n"},
			want: []string{
				"YWJjDQpkZQogZmdoCg==",
				"YWJjDQpkZQogZmdoIAo=",
				"abc%0D%0Ade%0A%20fgh",
				"YWJjDQpkZQogZmdoIAo",
				"YWJjDQpkZQogZmdoCg",
				"abc%0D%0Ade%0A+fgh",
				"YWJjDQpkZQogZmdo",
				"abc\r\nde\n fgh",
				"abc",
				"fgh",
			},
		},
		{
			values: []string{"", "ab", "  \n"},
			want:   nil,
		},
	}
	for _, tt := range tests {
		m := NewMasker(tt.values)
		var got []string
		for _, f := range m.forms {
			got = append(got, string(f))
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("NewMasker(%q) forms mismatch (-want +got):\n%s", tt.values, diff)
		}
	}
}

// naiveMask is the reference for Mask: it tries every form at every position
// and marks which bytes are covered and where a run of overlapping
// occurrences begins.
func naiveMask(forms [][]byte, b []byte) []byte {
	covered := make([]bool, len(b))
	// joined[i] is set when one occurrence covers both b[i-1] and b[i].
	joined := make([]bool, len(b))
	for i := range b {
		for _, f := range forms {
			if !bytes.HasPrefix(b[i:], f) {
				continue
			}
			for j := i; j < i+len(f); j++ {
				covered[j] = true
				if j > i {
					joined[j] = true
				}
			}
		}
	}
	out := []byte{}
	for i, c := range b {
		switch {
		case !covered[i]:
			out = append(out, c)
		case !joined[i]:
			out = append(out, "***"...)
		}
	}
	return out
}

// randomCase returns secrets and a text over a tiny alphabet, so that
// secrets overlap each other and themselves, and occur split anywhere.
func randomCase(r *rand.Rand) (values []string, text []byte) {
	const alphabet = "ab\n"
	word := func(n int) string {
		var sb strings.Builder
		for range n {
			sb.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	for range 1 + r.IntN(3) {
		values = append(values, word(3+r.IntN(5)))
	}
	return values, []byte(word(r.IntN(60)))
}

func TestMaskMatchesNaive(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		values, text := randomCase(r)
		m := NewMasker(values)
		got := m.Mask(text)
		want := naiveMask(m.forms, text)
		if !bytes.Equal(got, want) {
			t.Fatalf("NewMasker(%q).Mask(%q) = %q, want %q", values, text, got, want)
		}
	}
}

func TestMaskerConcurrentUse(t *testing.T) {
	t.Parallel()
	m := NewMasker([]string{"s3cr3t", "p@ss w/rd"})
	in := strings.Repeat("x s3cr3t y p%40ss+w%2Frd z\n", 100)
	want := strings.Repeat("x *** y *** z\n", 100)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Go(func() {
			if got := string(m.Mask([]byte(in))); got != want {
				errs <- fmt.Errorf("goroutine %d: Mask = %q, want %q", g, got, want)
			}
			var buf bytes.Buffer
			w := m.NewWriter(&buf)
			for chunk := range strings.SplitAfterSeq(in, "s3c") {
				w.Write([]byte(chunk))
			}
			w.Flush()
			if got := buf.String(); got != want {
				errs <- fmt.Errorf("goroutine %d: Writer output = %q, want %q", g, got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
