package web

import (
	"regexp"
	"strings"
	"testing"
)

func render(lines ...string) []string {
	var a ansi
	var out []string
	for _, l := range lines {
		var b strings.Builder
		a.line(&b, l)
		out = append(out, b.String())
	}
	return out
}

func TestANSI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"plain", []string{"hello"}, []string{"hello"}},
		{"escaped", []string{`<script>alert("x")</script> & 'y'`}, []string{`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;y&#39;`}},
		{"red then reset", []string{"\x1b[31mred\x1b[0m plain"}, []string{`<span class="fg1">red</span> plain`}},
		{"bold green", []string{"\x1b[1;32mok\x1b[m"}, []string{`<span class="b fg2">ok</span>`}},
		{"bright and background", []string{"\x1b[91;44mx"}, []string{`<span class="fg9 bg4">x</span>`}},
		{"256 colours", []string{"\x1b[38;5;9ma\x1b[38;5;196mb\x1b[48;5;240mc"}, []string{
			`<span class="fg9">a</span><span style="color:#ff0000">b</span><span style="color:#ff0000;background:#585858">c</span>`}},
		{"true colour", []string{"\x1b[38;2;1;2;3mrgb"}, []string{`<span style="color:#010203">rgb</span>`}},
		{"state carries to the next line", []string{"\x1b[33mone", "two\x1b[39m three"}, []string{
			`<span class="fg3">one</span>`, `<span class="fg3">two</span> three`}},
		{"other sequences dropped", []string{"a\x1b[2Kb\x1b]0;title\x07c\x1b(Bd"}, []string{"abcd"}},
		{"carriage return keeps the last", []string{"10%\r50%\r100%\r"}, []string{"100%"}},
		{"controls dropped", []string{"a\x00b\x08c\td"}, []string{"abc\td"}},
		{"bad sgr ignored", []string{"\x1b[38;9;1mx\x1b[?25ly"}, []string{"xy"}},
		{"unterminated escape", []string{"a\x1b["}, []string{"a"}},
		{"invalid utf-8", []string{"a\xffb"}, []string{"a\uFFFDb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(tt.in...)
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Errorf("render(%q) line %d = %q, want %q", tt.in, i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestANSILongLine(t *testing.T) {
	t.Parallel()
	got := render(strings.Repeat("x", maxLine+5))[0]
	if !strings.HasPrefix(got, strings.Repeat("x", maxLine)+`<span class="trunc">`) {
		t.Errorf("a line of %d characters renders as %.40q…, want the first %d and a note", maxLine+5, got, maxLine)
	}
}

// ourTags are the only tags the renderer writes.
var ourTags = regexp.MustCompile(`<span(?: class="[a-z0-9 ]+")?(?: style="[a-z:#0-9;]+")?>|</span>`)

// FuzzANSI checks that whatever a step prints, the HTML holds no markup
// but the renderer's own balanced spans.
func FuzzANSI(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[31mred\x1b[0m", "<b>x</b>", "\x1b[38;2;300;1;1m", "\x1b]8;;http://x\x1b\\link", "a\rb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a ansi
		var b strings.Builder
		for _, l := range strings.Split(s, "\n") {
			b.Reset()
			a.line(&b, l)
			out := b.String()
			if strings.Count(out, "<span") != strings.Count(out, "</span>") {
				t.Fatalf("render(%q) = %q: unbalanced spans", l, out)
			}
			rest := ourTags.ReplaceAllString(out, "")
			if strings.ContainsAny(rest, "<>\"") {
				t.Fatalf("render(%q) = %q: markup left outside the renderer's spans: %q", l, out, rest)
			}
		}
	})
}
