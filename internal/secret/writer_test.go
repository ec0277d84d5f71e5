package secret

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// stream writes chunks to a Writer for m, flushes it and returns what reached
// dst.
func stream(t testing.TB, m *Masker, chunks ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := m.NewWriter(&buf)
	for _, c := range chunks {
		n, err := w.Write(c)
		if err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v, want %d, nil", c, n, err, len(c))
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush() = %v, want nil", err)
	}
	return buf.Bytes()
}

// writerCases are inputs whose secrets straddle every kind of boundary.
var writerCases = []struct {
	values []string
	in     string
}{
	{[]string{"s3cr3t"}, "token=s3cr3t; again s3cr3t\n"},
	{[]string{"s3cr3t"}, "s3cr3ts3cr3t"},
	{[]string{"s3cr3t"}, "s3cs3cr3s3cr3t s3cr3"},
	{[]string{"s3cr3t1"}, "a czNjcjN0MQ== b czNjcjN0MQ c czNjcjN0M"},
	{[]string{"abc", "xabcdefx"}, "1 xabcdefx 2 abc 3 xabcdef"},
	{[]string{"abcdef", "defghi"}, "<abcdefghi> abcdefgh defghi"},
	{[]string{"abab"}, "<ababab> abababab aba"},
	{[]string{"aaa", "aaaaaaa"}, "aaaaaaaaaaaaaaaaa b aaaaaa"},
	{[]string{"-----BEGIN KEY-----\nMIIEabc123\nxyz789==\n-----END KEY-----"}, "key:\r\n-----BEGIN KEY-----\r\nMIIEabc123\r\nxyz789==\r\n-----END KEY-----\r\n"},
	{[]string{"p@ss w/rd"}, "GET /?pw=p%40ss+w%2Frd /p@ss%20w%2Frd p@ss w/rd p%40ss+w%2F"},
	{[]string{"s3cr3t"}, ""},
	{nil, "no secrets at all"},
}

func TestWriterSplitAnywhere(t *testing.T) {
	t.Parallel()
	for _, tc := range writerCases {
		m := NewMasker(tc.values)
		in := []byte(tc.in)
		want := m.Mask(in)
		for i := 0; i <= len(in); i++ {
			if got := stream(t, m, in[:i], in[i:]); !bytes.Equal(got, want) {
				t.Errorf("NewMasker(%q) writer output for %q split at %d = %q, want %q", tc.values, in, i, got, want)
			}
			for j := i; j <= len(in); j++ {
				if got := stream(t, m, in[:i], in[i:j], in[j:]); !bytes.Equal(got, want) {
					t.Errorf("NewMasker(%q) writer output for %q split at %d and %d = %q, want %q", tc.values, in, i, j, got, want)
				}
			}
		}
	}
}

func TestWriterByteByByte(t *testing.T) {
	t.Parallel()
	for _, tc := range writerCases {
		m := NewMasker(tc.values)
		in := []byte(tc.in)
		want := m.Mask(in)
		var chunks [][]byte
		for i := range in {
			chunks = append(chunks, in[i:i+1])
		}
		if got := stream(t, m, chunks...); !bytes.Equal(got, want) {
			t.Errorf("NewMasker(%q) writer output for %q byte by byte = %q, want %q", tc.values, in, got, want)
		}
	}
}

func TestWriterRandomSplits(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		values, text := randomCase(r)
		m := NewMasker(values)
		want := naiveMask(m.forms, text)
		var chunks [][]byte
		for rest := text; len(rest) > 0; {
			n := min(len(rest), r.IntN(8))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if got := stream(t, m, chunks...); !bytes.Equal(got, want) {
			t.Fatalf("NewMasker(%q) writer output for chunks %q = %q, want %q", values, chunks, got, want)
		}
	}
}

func TestWriterHoldsBackOnlyPossibleSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values      []string
		writes      []string
		beforeFlush string
		afterFlush  string
	}{
		{[]string{"s3cr3t"}, []string{"hello\n"}, "hello\n", "hello\n"},
		{[]string{"s3cr3t"}, []string{"hello s3c"}, "hello ", "hello s3c"},
		{[]string{"s3cr3t"}, []string{"hello s"}, "hello ", "hello s"},
		{[]string{"s3cr3t"}, []string{"hello s3cr3"}, "hello ", "hello s3cr3"},
		{[]string{"s3cr3t"}, []string{"hello s3cr3", "t"}, "hello ***", "hello ***"},
		{[]string{"s3cr3t"}, []string{"hello s3cr3", "x"}, "hello s3cr3x", "hello s3cr3x"},
		{[]string{"s3cr3t"}, []string{"s3cr3t and more"}, "*** and more", "*** and more"},
		{[]string{"s3cr3t"}, []string{"ss3", "cr3t"}, "s***", "s***"},
		// A shorter form is complete, but a longer one may still follow.
		{[]string{"abc", "abcdef"}, []string{"x abc"}, "x ", "x ***"},
		{[]string{"abc", "abcdef"}, []string{"x abc "}, "x *** ", "x *** "},
		// A finished run may still be extended by an overlapping occurrence.
		{[]string{"abcdef", "defghi"}, []string{"abcdef"}, "***", "***"},
		{[]string{"abcdef", "defghi"}, []string{"abcdef", "ghi!"}, "***!", "***!"},
		{[]string{"abcdef", "defghi"}, []string{"abcdef", "!"}, "***!", "***!"},
	}
	for _, tt := range tests {
		m := NewMasker(tt.values)
		var buf bytes.Buffer
		w := m.NewWriter(&buf)
		for _, s := range tt.writes {
			if _, err := w.Write([]byte(s)); err != nil {
				t.Fatalf("Write(%q): %v", s, err)
			}
		}
		if got := buf.String(); got != tt.beforeFlush {
			t.Errorf("NewMasker(%q) writer output after writes %q = %q, want %q", tt.values, tt.writes, got, tt.beforeFlush)
		}
		if err := w.Flush(); err != nil {
			t.Fatalf("Flush(): %v", err)
		}
		if got := buf.String(); got != tt.afterFlush {
			t.Errorf("NewMasker(%q) writer output after writes %q and Flush = %q, want %q", tt.values, tt.writes, got, tt.afterFlush)
		}
	}
}

func TestWriterFlushEndsStream(t *testing.T) {
	t.Parallel()
	m := NewMasker([]string{"s3cr3t"})
	var buf bytes.Buffer
	w := m.NewWriter(&buf)
	for _, s := range []string{"a s3c", "", "r3t b s3", "cr"} {
		w.Write([]byte(s))
	}
	w.Flush()
	w.Flush()
	w.Write([]byte("s3cr3t!"))
	w.Flush()
	if got, want := buf.String(), "a *** b s3cr***!"; got != want {
		t.Errorf("writer output = %q, want %q", got, want)
	}
}

// recorder is a dst that keeps the slices it was given.
type recorder struct{ writes [][]byte }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, p)
	return len(p), nil
}

func TestWriterPassThrough(t *testing.T) {
	t.Parallel()
	for _, values := range [][]string{nil, {}, {"", "ab", "  x  "}} {
		var rec recorder
		w := NewMasker(values).NewWriter(&rec)
		p := []byte("s3cr3t a b")
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("NewMasker(%q) Write(%q) = %d, %v, want %d, nil", values, p, n, err, len(p))
		}
		if err := w.Flush(); err != nil {
			t.Fatalf("NewMasker(%q) Flush() = %v, want nil", values, err)
		}
		if len(rec.writes) != 1 || &rec.writes[0][0] != &p[0] || len(rec.writes[0]) != len(p) {
			t.Errorf("NewMasker(%q) writer passed on %q, want the caller's slice itself", values, rec.writes)
		}
	}
}

func TestWriterNoCopyWithoutSecrets(t *testing.T) {
	t.Parallel()
	var rec recorder
	w := NewMasker([]string{"s3cr3t"}).NewWriter(&rec)
	p := []byte("nothing to see here\n")
	w.Write(p)
	if len(rec.writes) != 1 || &rec.writes[0][0] != &p[0] {
		t.Errorf("writer passed on %q, want the caller's slice itself", rec.writes)
	}
}

// failing is a dst that accepts ok bytes, then fails.
type failing struct {
	ok    int
	short bool
}

var errDst = errors.New("disk full")

func (f *failing) Write(p []byte) (int, error) {
	if len(p) <= f.ok {
		f.ok -= len(p)
		return len(p), nil
	}
	n := f.ok
	f.ok = 0
	if f.short {
		return n, nil
	}
	return n, errDst
}

func TestWriterDstError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dst  *failing
		want error
	}{
		{&failing{ok: 4}, errDst},
		{&failing{ok: 4, short: true}, io.ErrShortWrite},
	}
	for _, tt := range tests {
		w := NewMasker([]string{"s3cr3t"}).NewWriter(tt.dst)
		if n, err := w.Write([]byte("abc\n")); n != 4 || err != nil {
			t.Fatalf("first Write = %d, %v, want 4, nil", n, err)
		}
		if n, err := w.Write([]byte("s3cr3t\n")); n != 0 || !errors.Is(err, tt.want) {
			t.Errorf("failing Write = %d, %v, want 0, %v", n, err, tt.want)
		}
		if n, err := w.Write([]byte("more\n")); n != 0 || !errors.Is(err, tt.want) {
			t.Errorf("Write after failure = %d, %v, want 0, %v", n, err, tt.want)
		}
		if err := w.Flush(); !errors.Is(err, tt.want) {
			t.Errorf("Flush after failure = %v, want %v", err, tt.want)
		}
	}
}

// TestWriterDoesNotAllocate is not parallel: AllocsPerRun counts the
// allocations of the whole process.
func TestWriterDoesNotAllocate(t *testing.T) {
	text := logText(64<<10, []string{"s3cr3t-token-1234"})
	chunks := bytes.SplitAfter(text, []byte("s3cr"))
	w := NewMasker([]string{"s3cr3t-token-1234"}).NewWriter(io.Discard)
	run := func() {
		for _, c := range chunks {
			w.Write(c)
		}
		w.Flush()
	}
	run() // grow the buffers
	if allocs := testing.AllocsPerRun(10, run); allocs != 0 {
		t.Errorf("writing %d chunks allocates %v times, want 0", len(chunks), allocs)
	}
}

// FuzzWriter checks that a Writer gives the same output as Mask wherever the
// input is split, that Mask agrees with the naive reference, and that no form
// of the secret survives masking unless it contains '*' (masking inserts
// "***", which can complete such a form).
func FuzzWriter(f *testing.F) {
	f.Add([]byte("token=s3cr3t\n"), "s3cr3t", uint(8))
	f.Fuzz(func(t *testing.T, in []byte, secret string, split uint) {
		m := NewMasker([]string{secret})
		want := m.Mask(in)
		if ref := naiveMask(m.forms, in); !bytes.Equal(want, ref) {
			t.Fatalf("NewMasker(%q).Mask(%q) = %q, want %q", secret, in, want, ref)
		}
		for _, form := range m.forms {
			if !bytes.Contains(form, []byte("*")) && bytes.Contains(want, form) {
				t.Errorf("NewMasker(%q).Mask(%q) = %q, which contains form %q", secret, in, want, form)
			}
		}
		i := int(split % uint(len(in)+1))
		if got := stream(t, m, in[:i], in[i:]); !bytes.Equal(got, want) {
			t.Errorf("NewMasker(%q) writer output for %q split at %d = %q, want %q", secret, in, i, got, want)
		}
		if len(in) <= 256 {
			var chunks [][]byte
			for j := range in {
				chunks = append(chunks, in[j:j+1])
			}
			if got := stream(t, m, chunks...); !bytes.Equal(got, want) {
				t.Errorf("NewMasker(%q) writer output for %q byte by byte = %q, want %q", secret, in, got, want)
			}
		}
	})
}

// logText returns about n bytes of build-log-like text, deterministically,
// with each secret appearing now and then.
func logText(n int, secrets []string) []byte {
	r := rand.New(rand.NewPCG(5, 6))
	words := []string{
		"go:", "downloading", "github.com/gantry-ci/gantry", "v1.2.3", "compiling",
		"internal/engine", "ok", "PASS", "FAIL", "--- RUN", "TestParse", "(0.01s)",
		"Step", "3/12", ":", "RUN", "apt-get", "install", "-y", "curl", "ca-certificates",
		"Reading", "package", "lists...", "Done", "npm", "WARN", "deprecated", "=>",
		"[internal]", "load", "build", "context", "sha256:9f86d081884c7d65", "0.0s",
	}
	var b bytes.Buffer
	line := 0
	for b.Len() < n {
		line++
		fmt.Fprintf(&b, "2025-06-01T12:%02d:%02d.%03dZ ", line/60%60, line%60, r.IntN(1000))
		for range 4 + r.IntN(10) {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		if len(secrets) > 0 && line%50 == 0 {
			b.WriteString("token=")
			b.WriteString(secrets[r.IntN(len(secrets))])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

func benchSecrets(n int) []string {
	r := rand.New(rand.NewPCG(7, 8))
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var secrets []string
	for i := range n {
		var sb strings.Builder
		sb.WriteString([]string{"ghp_", "glpat-", "AKIA", "xoxb-", ""}[i%5])
		for range 20 + r.IntN(20) {
			sb.WriteByte(alnum[r.IntN(len(alnum))])
		}
		secrets = append(secrets, sb.String())
	}
	return secrets
}

func BenchmarkWriter(b *testing.B) {
	for _, n := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("secrets=%d", n), func(b *testing.B) {
			secrets := benchSecrets(n)
			text := logText(1<<20, secrets)
			const chunk = 64 << 10
			w := NewMasker(secrets).NewWriter(io.Discard)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				for rest := text; len(rest) > 0; {
					k := min(chunk, len(rest))
					w.Write(rest[:k])
					rest = rest[k:]
				}
			}
			w.Flush()
		})
	}
}

func BenchmarkMask(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("secrets=%d", n), func(b *testing.B) {
			secrets := benchSecrets(n)
			text := logText(64<<10, secrets)
			m := NewMasker(secrets)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				m.Mask(text)
			}
		})
	}
}

// BenchmarkWriterPrefixHeavy measures output that keeps matching the start of
// a secret: separator lines of dashes with a PEM key as the secret, whose
// header, footer and escaped forms all begin with "-----".
func BenchmarkWriterPrefixHeavy(b *testing.B) {
	key := "-----BEGIN KEY-----\nMIIEabc123\n-----END KEY-----"
	text := bytes.Repeat([]byte(strings.Repeat("-", 60)+"\n"), 64<<10/61)
	w := NewMasker([]string{key}).NewWriter(io.Discard)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		w.Write(text)
	}
	w.Flush()
}
