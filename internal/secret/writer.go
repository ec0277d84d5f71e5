package secret

import "io"

// Writer masks a stream on its way to another writer, so that a step's output
// is masked before it reaches any sink. It passes on everything it can decide
// about at once and holds back only the tail of what it has seen that could
// still be the beginning of a secret form (less than the longest form), so a
// secret split across writes, even byte by byte, is masked, and ordinary
// output is not delayed. Flush writes out the held-back tail at the end of
// the stream.
//
// The bytes a Writer passes on up to and including a Flush equal
// [Masker.Mask] of everything written to it since the previous Flush.
//
// A Writer is not safe for concurrent use: it keeps the held-back tail
// between calls, so writes from several goroutines (a step's stdout and
// stderr) must be serialized before they reach it.
type Writer struct {
	m   *Masker
	dst io.Writer
	// held is the tail of the stream not yet decided about; its first cov
	// bytes are already masked (their "***" has been written).
	held []byte
	cov  int
	// out is reused for the masked text of each write.
	out []byte
	// err is the first error from dst; once set the stream is broken.
	err error
}

// NewWriter returns a Writer that masks m's secrets in what is written to it
// and passes the result on to dst. When m masks nothing, the Writer hands
// every write straight to dst without copying it.
func (m *Masker) NewWriter(dst io.Writer) *Writer {
	return &Writer{m: m, dst: dst}
}

// Write masks p and passes on to dst everything that can no longer turn out
// to be part of a secret; it keeps the rest for the next Write or Flush. It
// returns len(p) on success. When dst fails, Write returns 0 and that error,
// and so does every later call: part of p may have reached dst, so the
// stream cannot be resumed.
func (w *Writer) Write(p []byte) (int, error) {
	if w.m.empty() {
		return w.dst.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	b := p
	fromHeld := len(w.held) > 0
	if fromHeld {
		w.held = append(w.held, p...)
		b = w.held
	}
	res, fresh, hold, cov := w.m.scan(w.out[:0], b, w.cov, false)
	if fresh {
		w.out = res[:0]
	}
	if len(res) > 0 {
		if err := w.write(res); err != nil {
			return 0, err
		}
	}
	if fromHeld {
		w.held = w.held[:copy(w.held, b[hold:])]
	} else {
		w.held = append(w.held[:0], p[hold:]...)
	}
	w.cov = cov
	return len(p), nil
}

// Flush masks and writes out the held-back tail. Call it once the stream has
// ended (a step has exited): a secret split across a Flush is not masked,
// and nothing written before a Flush waits for it otherwise. Flush does not
// flush dst.
func (w *Writer) Flush() error {
	if w.m.empty() {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if len(w.held) == 0 {
		return nil
	}
	res, fresh, _, _ := w.m.scan(w.out[:0], w.held, w.cov, true)
	if fresh {
		w.out = res[:0]
	}
	var err error
	if len(res) > 0 {
		err = w.write(res)
	}
	w.held = w.held[:0]
	w.cov = 0
	return err
}

// write passes b on to dst and makes a failure sticky.
func (w *Writer) write(b []byte) error {
	n, err := w.dst.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
	}
	return err
}
