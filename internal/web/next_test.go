package web

import "testing"

// next never sends a signed-in user off this server: browsers drop tabs
// and line breaks from a URL, so "/<TAB>/evil.example" is "//evil.example".
func TestNextStaysOnThisServer(t *testing.T) {
	for _, v := range []string{"//evil.example", "/\\evil.example", "/\t/evil.example", "/\x0b/evil.example",
		"/\x00/evil.example", "/\x7f/evil.example", "https://evil.example", "/\r\n/evil.example", "\t//evil.example"} {
		if got := next(v); got != "/" {
			t.Errorf("next(%q) = %q, want /", v, got)
		}
	}
	for _, v := range []string{"/", "/builds/1", "/repos/acme/web?branch=main#x"} {
		if got := next(v); got != v {
			t.Errorf("next(%q) = %q, want it kept", v, got)
		}
	}
}
