package notify

import (
	"bytes"
	"fmt"
	"html"
	"unicode/utf8"

	"github.com/gantry-ci/gantry/internal/store"
)

// BadgeStatuses are the build statuses a badge reports: the latest build
// that ended in one of them is the branch's state (a cancelled or skipped
// build says nothing about the code).
var BadgeStatuses = []string{store.StatusSuccess, store.StatusFailure, store.StatusError}

// Badge is an SVG status badge ("build | passing") for a build status; an
// empty or other status gives "unknown". It is the flat style shields.io
// made common, and holds no text but its fixed words.
func Badge(status string) []byte {
	message, color := "unknown", "#9f9f9f"
	switch status {
	case store.StatusSuccess:
		message, color = "passing", "#4c1"
	case store.StatusFailure:
		message, color = "failing", "#e05d44"
	case store.StatusError:
		message, color = "error", "#fe7d37"
	}
	return badge("build", message, color)
}

// textWidth estimates the width in pixels of s in 11px Verdana.
func textWidth(s string) int {
	return utf8.RuneCountInString(s)*7 + 10
}

func badge(label, message, color string) []byte {
	lw, mw := textWidth(label), textWidth(message)
	w := lw + mw
	label, message = html.EscapeString(label), html.EscapeString(message)
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s: %s">`, w, label, message)
	fmt.Fprintf(&b, `<title>%s: %s</title>`, label, message)
	b.WriteString(`<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`)
	fmt.Fprintf(&b, `<clipPath id="r"><rect width="%d" height="20" rx="3" fill="#fff"/></clipPath>`, w)
	fmt.Fprintf(&b, `<g clip-path="url(#r)"><rect width="%d" height="20" fill="#555"/><rect x="%d" width="%d" height="20" fill="%s"/><rect width="%d" height="20" fill="url(#s)"/></g>`,
		lw, lw, mw, color, w)
	b.WriteString(`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">`)
	for _, t := range []struct {
		x    int
		text string
	}{{lw / 2, label}, {lw + mw/2, message}} {
		fmt.Fprintf(&b, `<text x="%d" y="15" fill="#010101" fill-opacity=".3">%s</text><text x="%d" y="14">%s</text>`, t.x, t.text, t.x, t.text)
	}
	b.WriteString("</g></svg>\n")
	return b.Bytes()
}
