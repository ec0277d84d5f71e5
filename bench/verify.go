package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
)

// checkLog checks that the file at path holds the lines prefix+"1" to
// prefix+n in order, and no other line starting with prefix. Lines without
// the prefix (gantry's step headers and summary) are allowed anywhere.
func checkLog(path, prefix string, n int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := checkLines(f, []byte(prefix), n); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func checkLines(r io.Reader, prefix []byte, n int) error {
	sc := bufio.NewScanner(bufio.NewReaderSize(r, 256<<10))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var want []byte
	next, lineNo := 1, 0
	for sc.Scan() {
		lineNo++
		line, ok := bytes.CutPrefix(sc.Bytes(), prefix)
		if !ok {
			continue
		}
		want = strconv.AppendInt(want[:0], int64(next), 10)
		if next > n || !bytes.Equal(line, want) {
			if next > n {
				return fmt.Errorf("line %d: %q after the last expected line %d", lineNo, sc.Text(), n)
			}
			return fmt.Errorf("line %d: %q, want %q", lineNo, sc.Text(), string(prefix)+string(want))
		}
		next++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if got := next - 1; got != n {
		return fmt.Errorf("%d prefixed lines, want %d", got, n)
	}
	return nil
}
