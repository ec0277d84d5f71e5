package web

import (
	"fmt"
	"html"
	"strconv"
	"strings"
)

// ansi renders terminal output as HTML: SGR escape sequences (colors,
// bold, italic, underline) become spans with classes or, for 256-colour
// and true-colour values, an inline colour; every other escape sequence
// is dropped; text is escaped. A carriage return keeps what follows it, as
// a terminal shows a progress bar once done. The state carries from one
// line to the next, as it does in a terminal.
type ansi struct {
	bold, faint, italic, underline bool
	fg, bg                         string // class suffix ("1", "b3") or "#rrggbb"
}

// maxLine bounds the characters of one line shown on a page; the raw
// download has the rest.
const maxLine = 10000

// line renders one line (without its newline) into b.
func (a *ansi) line(b *strings.Builder, s string) {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if i := strings.LastIndexByte(strings.TrimRight(s, "\r"), '\r'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimRight(s, "\r")
	truncated := false
	if len(s) > maxLine {
		s, truncated = s[:maxLine], true
	}
	open := false
	start := func() {
		if open {
			b.WriteString("</span>")
			open = false
		}
		if cls, style := a.attrs(); cls != "" || style != "" {
			b.WriteString("<span")
			if cls != "" {
				b.WriteString(` class="`)
				b.WriteString(cls)
				b.WriteString(`"`)
			}
			if style != "" {
				b.WriteString(` style="`)
				b.WriteString(style)
				b.WriteString(`"`)
			}
			b.WriteString(">")
			open = true
		}
	}
	start()
	text := 0 // start of the text not yet written
	for i := 0; i < len(s); {
		if s[i] != 0x1b {
			i++
			continue
		}
		b.WriteString(html.EscapeString(dropControls(s[text:i])))
		n, params, final := escape(s[i:])
		if final == 'm' {
			a.sgr(params)
			start()
		}
		i += n
		text = i
	}
	b.WriteString(html.EscapeString(dropControls(s[text:])))
	if open {
		b.WriteString("</span>")
	}
	if truncated {
		b.WriteString(`<span class="trunc"> … (line cut; the raw log has all of it)</span>`)
	}
}

// dropControls removes the C0 control characters other than tab, which a
// page cannot show.
func dropControls(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return -1
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// escape reads the escape sequence at the start of s (s[0] is ESC) and
// returns its length, its parameters and, for a CSI sequence, its final
// byte (0 otherwise).
func escape(s string) (n int, params string, final byte) {
	if len(s) < 2 {
		return len(s), "", 0
	}
	switch s[1] {
	case '[': // CSI: parameters, intermediates, one final byte 0x40-0x7e
		for i := 2; i < len(s); i++ {
			if c := s[i]; c >= 0x40 && c <= 0x7e {
				return i + 1, s[2:i], c
			}
		}
		return len(s), "", 0
	case ']', 'P', '_', '^': // OSC and friends: up to BEL or ST
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1, "", 0
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2, "", 0
			}
		}
		return len(s), "", 0
	}
	i := 1
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f { // intermediates, as in ESC ( B
		i++
	}
	return min(i+1, len(s)), "", 0
}

// sgr applies Select Graphic Rendition parameters.
func (a *ansi) sgr(params string) {
	if params == "" {
		*a = ansi{}
		return
	}
	ps := strings.FieldsFunc(params, func(r rune) bool { return r == ';' || r == ':' })
	num := func(i int) (int, bool) {
		if i >= len(ps) {
			return 0, false
		}
		n, err := strconv.Atoi(ps[i])
		return n, err == nil
	}
	for i := 0; i < len(ps); i++ {
		p, ok := num(i)
		if !ok {
			return // not a sequence we know: ignore the rest
		}
		switch {
		case p == 0:
			*a = ansi{}
		case p == 1:
			a.bold = true
		case p == 2:
			a.faint = true
		case p == 3:
			a.italic = true
		case p == 4:
			a.underline = true
		case p == 22:
			a.bold, a.faint = false, false
		case p == 23:
			a.italic = false
		case p == 24:
			a.underline = false
		case p >= 30 && p <= 37:
			a.fg = strconv.Itoa(p - 30)
		case p >= 90 && p <= 97:
			a.fg = strconv.Itoa(p - 90 + 8)
		case p == 39:
			a.fg = ""
		case p >= 40 && p <= 47:
			a.bg = strconv.Itoa(p - 40)
		case p >= 100 && p <= 107:
			a.bg = strconv.Itoa(p - 100 + 8)
		case p == 49:
			a.bg = ""
		case p == 38 || p == 48:
			var c string
			mode, _ := num(i + 1)
			switch mode {
			case 5:
				n, ok := num(i + 2)
				if ok && n >= 0 && n < 256 {
					c = color256(n)
				}
				i += 2
			case 2:
				r, ok1 := num(i + 2)
				g, ok2 := num(i + 3)
				bl, ok3 := num(i + 4)
				if ok1 && ok2 && ok3 && r >= 0 && r < 256 && g >= 0 && g < 256 && bl >= 0 && bl < 256 {
					c = fmt.Sprintf("#%02x%02x%02x", r, g, bl)
				}
				i += 4
			default:
				return
			}
			if c != "" {
				if p == 38 {
					a.fg = c
				} else {
					a.bg = c
				}
			}
		}
	}
}

// color256 is a 256-colour index as a class suffix (the 16 basic colours,
// which the style sheet themes) or as #rrggbb.
func color256(n int) string {
	if n < 16 {
		return strconv.Itoa(n)
	}
	if n < 232 {
		n -= 16
		level := func(v int) int {
			if v == 0 {
				return 0
			}
			return 55 + v*40
		}
		return fmt.Sprintf("#%02x%02x%02x", level(n/36), level(n/6%6), level(n%6))
	}
	g := 8 + (n-232)*10
	return fmt.Sprintf("#%02x%02x%02x", g, g, g)
}

// attrs is the current state as a class list and an inline style.
func (a *ansi) attrs() (cls, style string) {
	var c, st []string
	if a.bold {
		c = append(c, "b")
	}
	if a.faint {
		c = append(c, "f")
	}
	if a.italic {
		c = append(c, "i")
	}
	if a.underline {
		c = append(c, "u")
	}
	if a.fg != "" {
		if a.fg[0] == '#' {
			st = append(st, "color:"+a.fg)
		} else {
			c = append(c, "fg"+a.fg)
		}
	}
	if a.bg != "" {
		if a.bg[0] == '#' {
			st = append(st, "background:"+a.bg)
		} else {
			c = append(c, "bg"+a.bg)
		}
	}
	return strings.Join(c, " "), strings.Join(st, ";")
}
