// Package secret keeps secret values safe: encrypted at rest, handed only
// to the jobs that name them, and out of build logs.
//
// A [Vault] stores repositories' secrets encrypted with AES-256-GCM under
// the keys of a [Keyring] (from GANTRY_SECRET_KEY or a key file), and
// rotates those keys. A [Masker] replaces every occurrence of a secret in
// a job's output, and of the forms a step is likely to print it in, with
// "***". Masking happens before step output reaches any sink (the log
// store, a live log stream, a file): a step's output goes through a [Writer]
// first, so nothing downstream ever holds the unmasked bytes.
//
// For each secret value a [Masker] masks:
//
//   - the value, trimmed of surrounding whitespace and newlines;
//   - its standard and URL-safe base64 encodings, with and without padding,
//     of the trimmed value, of the untrimmed value (so `base64 < file`,
//     which encodes the file's trailing newline, is masked too), and of the
//     trimmed value with a newline (what `echo "$SECRET" | base64` encodes);
//   - its URL query-escaped and path-escaped forms;
//   - for a value of several lines (a private key, a JSON credentials file),
//     each line on its own, trimmed, so a value printed line by line or with
//     CRLF line endings is masked.
//
// Where occurrences overlap (two secrets sharing bytes, or a secret inside a
// longer one), every byte covered by any occurrence is masked and each run of
// overlapping occurrences becomes a single "***"; adjacent, non-overlapping
// occurrences each become their own "***".
//
// What it does not mask, by design:
//
//   - values, and derived forms such as single lines, shorter than 3 bytes
//     after trimming: masking "a" or "42" would wreck every log while hiding
//     nothing worth hiding;
//   - any transformation other than those listed: hex, other escapings,
//     compression, a secret interleaved with other text, or a secret encoded
//     together with other bytes (base64 of "user:token" in an HTTP basic
//     authorization header does not contain the base64 of "token");
//   - a secret split across a [Writer.Flush], which marks the end of a stream.
//
// Masking is a safety net for output a step prints by accident; a step that
// means to exfiltrate a secret can always transform it first.
package secret

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"net/url"
	"slices"
	"strings"
)

// minLen is the length below which a value or a derived form is not masked.
const minLen = 3

// replacement is what each run of masked bytes becomes.
const replacement = "***"

// Masker finds and masks the occurrences of a fixed set of secret values. It
// is built once per set of secrets (a job) and is immutable afterwards, so it
// is safe for concurrent use by many goroutines and Writers. The nil *Masker
// masks nothing.
type Masker struct {
	// forms are the byte strings to mask, deduplicated, longest first.
	forms [][]byte
	// pair has bit b0<<8|b1 set when some form begins with the bytes b0 b1.
	// Every form is at least minLen bytes long, so the scan tests each
	// position with one bit lookup and almost never looks further.
	pair [1 << 16 / 64]uint64
	// first[b] is set when some form begins with b; it decides whether the
	// last byte of a chunk must be held back.
	first [256]bool
	// byPair lists the forms beginning with each pair of bytes, longest first.
	byPair pairTable
}

// pairTable maps the first two bytes of a form to the forms that begin with
// them. It is consulted on every position that passes the pair filter, which
// in output full of a secret's prefix ("-----" before a PEM key) is most
// positions; an open-addressing table over a handful of keys is several
// times faster there than a map.
type pairTable struct {
	shift uint      // 32 - log2(len(slots))
	keys  []uint16  // keys[i] is valid when forms[i] is not nil
	forms [][]entry // longest first
}

// entry is a form with its first (up to) 8 bytes as a little-endian word, so
// that most candidates are rejected with one comparison.
type entry struct {
	head, mask uint64
	form       []byte
}

func (t *pairTable) slot(k uint16) uint32 {
	return uint32(k) * 0x9E3779B1 >> t.shift
}

// lookup returns the forms beginning with the bytes k>>8, k&0xff.
func (t *pairTable) lookup(k uint16) []entry {
	mask := uint32(len(t.keys) - 1)
	for i := t.slot(k); ; i = (i + 1) & mask {
		if t.forms[i] == nil || t.keys[i] == k {
			return t.forms[i]
		}
	}
}

// newPairTable builds the table for forms, which are sorted longest first.
func newPairTable(forms [][]byte) pairTable {
	bits := uint(3)
	for 1<<bits < 2*len(forms) {
		bits++
	}
	t := pairTable{
		shift: 32 - bits,
		keys:  make([]uint16, 1<<bits),
		forms: make([][]entry, 1<<bits),
	}
	mask := uint32(len(t.keys) - 1)
	for _, f := range forms {
		var head [8]byte
		n := copy(head[:], f)
		e := entry{
			head: binary.LittleEndian.Uint64(head[:]),
			mask: ^uint64(0) >> (64 - 8*n),
			form: f,
		}
		k := uint16(f[0])<<8 | uint16(f[1])
		i := t.slot(k)
		for t.forms[i] != nil && t.keys[i] != k {
			i = (i + 1) & mask
		}
		t.keys[i] = k
		t.forms[i] = append(t.forms[i], e)
	}
	return t
}

// NewMasker returns a Masker for values and the derived forms listed in the
// package documentation. Values that are shorter than 3 bytes after trimming
// whitespace are ignored, as are duplicates, so callers can pass every secret
// of a job without filtering.
func NewMasker(values []string) *Masker {
	seen := make(map[string]bool)
	var forms []string
	add := func(s string) {
		if len(s) < minLen || seen[s] {
			return
		}
		seen[s] = true
		forms = append(forms, s)
	}
	for _, v := range values {
		t := strings.TrimSpace(v)
		if len(t) < minLen {
			continue
		}
		add(t)
		for _, enc := range []*base64.Encoding{
			base64.StdEncoding,
			base64.RawStdEncoding,
			base64.URLEncoding,
			base64.RawURLEncoding,
		} {
			add(enc.EncodeToString([]byte(t)))
			add(enc.EncodeToString([]byte(t + "\n")))
			if v != t {
				add(enc.EncodeToString([]byte(v)))
			}
		}
		add(url.QueryEscape(t))
		add(url.PathEscape(t))
		if strings.ContainsAny(t, "\r\n") {
			// A lone CR also ends a line on a terminal.
			lines := strings.FieldsFunc(t, func(r rune) bool { return r == '\n' || r == '\r' })
			for _, line := range lines {
				add(strings.TrimSpace(line))
			}
		}
	}
	slices.SortFunc(forms, func(a, b string) int {
		if c := cmp.Compare(len(b), len(a)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})

	m := &Masker{}
	for _, f := range forms {
		fb := []byte(f)
		m.forms = append(m.forms, fb)
		k := uint16(fb[0])<<8 | uint16(fb[1])
		m.pair[k>>6] |= 1 << (k & 63)
		m.first[fb[0]] = true
	}
	m.byPair = newPairTable(m.forms)
	return m
}

// empty reports whether m masks nothing, so that callers can skip it.
func (m *Masker) empty() bool {
	return m == nil || len(m.forms) == 0
}

// Mask returns a copy of b with every secret form masked. It never modifies
// b. It is meant for whole, bounded texts (an error message, a single log
// line); streams go through a [Writer], which gives the same result without
// holding the stream in memory.
func (m *Masker) Mask(b []byte) []byte {
	if m.empty() {
		return bytes.Clone(b)
	}
	// Masking never lengthens a text: "***" stands for at least minLen bytes.
	out := make([]byte, 0, len(b))
	res, fresh, _, _ := m.scan(out, b, 0, true)
	if !fresh {
		return append(out, res...)
	}
	return res
}

// scan masks b, which begins with cov bytes that are already masked (they
// belong to a run whose "***" has been written). It returns the masked text
// of b[:hold], where b[hold:] is the shortest tail of b that could still be
// the beginning of a form and must wait for more input; when final is set
// nothing is held back and hold is len(b). cov is the number of bytes at the
// beginning of b[hold:] that are already masked, to be passed to the next
// scan of that tail.
//
// When b[:hold] needs no masking, res is a subslice of b and fresh is false;
// otherwise res is out with the masked text appended and fresh is true. So
// the common case, a chunk without secrets, is written without a copy.
func (m *Masker) scan(out, b []byte, cov int, final bool) (res []byte, fresh bool, hold, nextCov int) {
	coverEnd := cov // b[:coverEnd] is covered by the current run
	done := cov     // b[:done] has been accounted for in out
	hold = len(b)
	n := len(b)
	var i int
	for i = 0; i+1 < n; i++ {
		k := uint16(b[i])<<8 | uint16(b[i+1])
		if m.pair[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		l := 0
		if n-i >= 8 {
			x := binary.LittleEndian.Uint64(b[i:])
			for _, e := range m.byPair.lookup(k) {
				f := e.form
				if x&e.mask != e.head {
					continue
				}
				if len(f) <= n-i {
					if len(f) <= 8 || bytes.Equal(b[i+8:i+len(f)], f[8:]) {
						l = len(f)
						break
					}
				} else if !final && bytes.HasPrefix(f[8:], b[i+8:]) {
					hold = i
					goto end
				}
			}
		} else {
			for _, e := range m.byPair.lookup(k) {
				f := e.form
				if len(f) <= n-i {
					if bytes.Equal(b[i:i+len(f)], f) {
						l = len(f)
						break
					}
				} else if !final && bytes.HasPrefix(f, b[i:]) {
					hold = i
					goto end
				}
			}
		}
		if l == 0 {
			continue
		}
		if i < coverEnd {
			// Overlaps the current run: extend it.
			if i+l > coverEnd {
				coverEnd = i + l
				done = coverEnd
			}
			continue
		}
		out = append(out, b[done:i]...)
		out = append(out, replacement...)
		fresh = true
		coverEnd = i + l
		done = coverEnd
	}
	if i == n-1 && !final && m.first[b[i]] {
		hold = i
	}
end:
	if coverEnd > hold {
		nextCov = coverEnd - hold
	}
	if !fresh {
		if done >= hold {
			return b[:0], false, hold, nextCov
		}
		return b[done:hold], false, hold, nextCov
	}
	if done < hold {
		out = append(out, b[done:hold]...)
	}
	return out, true, hold, nextCov
}
