// Package issue finds issue keys in what people write about a change: its
// branch name, pull request title and commit message. Two kinds are
// known: tracker keys as Jira, YouTrack and Linear write them (ABC-123,
// a project key of capitals and digits, a dash, a number) and the forge's
// own references (#123).
//
// It is pure: no I/O, no state. It does not know whether an issue exists;
// a key is only text that looks like one. Common technical names that
// look like keys (UTF-8, SHA-256, ISO-8601, CVE-2024-1234...) are not
// keys.
package issue

import (
	"slices"
	"strings"
)

// MaxKeys is the most keys Keys returns; the rest are dropped.
const MaxKeys = 50

// maxKeyLen bounds a key: a project key of at most 10 characters (Jira's
// limit), a dash and a number of at most 9 digits.
const (
	maxProject = 10
	maxNumber  = 9
)

// notProjects are words in capitals followed by a dash and a number that
// name a standard, an encoding or an algorithm, not a project.
var notProjects = []string{
	"AES", "ARM", "CP", "CVE", "CWE", "DES", "ECMA", "GPL", "HTTP", "IEC", "IEEE", "ISO", "LGPL", "MD", "PEP",
	"RFC", "RSA", "SHA", "SSL", "TLS", "UCS", "UTF", "WIN", "X",
}

// Keys returns the issue keys found in texts, each once, in the order
// they first appear: ABC-123 and #123. A key must stand on its own: not
// inside a longer word or number (xABC-123, ABC-1234x, a#1, &#123;).
func Keys(texts ...string) []string {
	var out []string
	add := func(k string) bool {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
		return len(out) < MaxKeys
	}
	for _, s := range texts {
		for i := 0; i < len(s); {
			k, n := keyAt(s, i)
			if k != "" {
				if !add(k) {
					return out
				}
				i += n
				continue
			}
			i++
		}
	}
	return out
}

// Valid reports whether s is one key, as Keys would find it.
func Valid(s string) bool {
	k, n := keyAt(s, 0)
	return k != "" && n == len(s)
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isWord(c byte) bool {
	return isUpper(c) || isDigit(c) || ('a' <= c && c <= 'z') || c == '_' || c >= 0x80
}

// keyAt returns the key that starts at s[i] and its length in bytes, or
// "" when none does.
func keyAt(s string, i int) (string, int) {
	if i >= len(s) {
		return "", 0
	}
	if i > 0 && (isWord(s[i-1]) || s[i-1] == '&' || s[i-1] == '-' || s[i-1] == '/' && s[i] == '#') {
		return "", 0
	}
	j := i
	switch {
	case s[i] == '#':
		j++
	case isUpper(s[i]):
		for j < len(s) && (isUpper(s[j]) || isDigit(s[j])) {
			j++
		}
		if j-i < 2 || j-i > maxProject || j >= len(s) || s[j] != '-' || slices.Contains(notProjects, s[i:j]) {
			return "", 0
		}
		j++
	default:
		return "", 0
	}
	start := j
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	digits := j - start
	if digits == 0 || digits > maxNumber || s[start] == '0' {
		return "", 0
	}
	// Not part of a longer word or number: ABC-12x, ABC-12-3, #12.5.
	if j < len(s) && (isWord(s[j]) || (s[j] == '-' || s[j] == '.') && j+1 < len(s) && isDigit(s[j+1])) {
		return "", 0
	}
	return strings.Clone(s[i:j]), j - i
}
