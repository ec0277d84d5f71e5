package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func sampleEntry() *AuditEntry {
	return &AuditEntry{
		Seq: 7, At: time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC),
		Actor: "token:admin#1", Address: "192.0.2.7", Action: "repo.add", Object: "repo:acme/web",
		Reason: "onboarding ✓", Detail: map[string]string{"forge": "github", "clone_url": "https://example.com/acme/web.git"},
		PrevHash: bytes.Repeat([]byte{0xab}, 32),
	}
}

// TestAuditHashGolden pins the encoding: a change to it breaks every chain
// already stored, so it must be a new format (a new domain string and a
// way to tell the formats apart), never an edit. The value was also
// computed by an independent implementation (Python) of the encoding as
// AuditHash documents it.
func TestAuditHashGolden(t *testing.T) {
	t.Parallel()
	const want = "4c0633cdfa7222b72a6b6dd13805577fedda2a3d052f4abd2397fc3b96607cb9"
	if got := hex.EncodeToString(AuditHash(sampleEntry())); got != want {
		t.Errorf("AuditHash(sample) = %s, want %s", got, want)
	}
}

func TestAuditHashCoversEveryField(t *testing.T) {
	t.Parallel()
	// A field added to AuditEntry must be hashed, and changed below.
	if n := reflect.TypeOf(AuditEntry{}).NumField(); n != 10 {
		t.Fatalf("AuditEntry has %d fields, this test knows 10: hash the new one in writeAudit and add it here", n)
	}
	base := AuditHash(sampleEntry())
	for name, change := range map[string]func(e *AuditEntry){
		"Seq":            func(e *AuditEntry) { e.Seq++ },
		"At":             func(e *AuditEntry) { e.At = e.At.Add(time.Microsecond) },
		"Actor":          func(e *AuditEntry) { e.Actor = "token:admin#2" },
		"Address":        func(e *AuditEntry) { e.Address = "192.0.2.8" },
		"Action":         func(e *AuditEntry) { e.Action = "repo.rm" },
		"Object":         func(e *AuditEntry) { e.Object = "repo:acme/api" },
		"Reason":         func(e *AuditEntry) { e.Reason = "" },
		"Detail value":   func(e *AuditEntry) { e.Detail["forge"] = "gitea" },
		"Detail key":     func(e *AuditEntry) { e.Detail["forgE"] = e.Detail["forge"]; delete(e.Detail, "forge") },
		"Detail added":   func(e *AuditEntry) { e.Detail["x"] = "" },
		"PrevHash":       func(e *AuditEntry) { e.PrevHash[31] ^= 1 },
		"field boundary": func(e *AuditEntry) { e.Actor, e.Address = "token:admin#1192.0.2.7", "" },
		"detail boundary": func(e *AuditEntry) {
			e.Detail = map[string]string{"forgegithub": "", "clone_url": e.Detail["clone_url"]}
		},
	} {
		e := sampleEntry()
		change(e)
		if bytes.Equal(AuditHash(e), base) {
			t.Errorf("changing %s leaves the hash as it was", name)
		}
	}
	// What a store cannot tell apart hashes alike: nil and empty, the
	// time's zone, and the Hash field itself.
	e := sampleEntry()
	e.At = e.At.In(time.FixedZone("CET", 3600))
	e.Hash = []byte("anything")
	if !bytes.Equal(AuditHash(e), base) {
		t.Errorf("the zone of At or the Hash field changes the hash")
	}
	a, b := sampleEntry(), sampleEntry()
	a.Detail, a.PrevHash = nil, nil
	b.Detail, b.PrevHash = map[string]string{}, []byte{}
	if !bytes.Equal(AuditHash(a), AuditHash(b)) {
		t.Errorf("nil and empty Detail or PrevHash hash differently")
	}
}

// decodeAudit reads writeAudit's encoding back: that it can, for every
// entry, shows the encoding is unambiguous (two entries never share one).
func decodeAudit(data []byte) (*AuditEntry, error) {
	r := bytes.NewReader(data)
	domain := make([]byte, len(auditDomain))
	if _, err := r.Read(domain); err != nil || string(domain) != auditDomain {
		return nil, errors.New("no domain")
	}
	var err error
	num := func() uint64 {
		var n [8]byte
		if _, e := r.Read(n[:]); e != nil && err == nil {
			err = e
		}
		return binary.BigEndian.Uint64(n[:])
	}
	str := func() string {
		n := num()
		if n > uint64(r.Len()) {
			if err == nil {
				err = errors.New("string longer than the rest")
			}
			return ""
		}
		b := make([]byte, n)
		r.Read(b)
		return string(b)
	}
	e := &AuditEntry{}
	e.Seq = int64(num())
	e.At = time.UnixMicro(int64(num())).UTC()
	e.Actor, e.Address, e.Action, e.Object, e.Reason = str(), str(), str(), str(), str()
	if n := num(); n > 0 && err == nil {
		e.Detail = map[string]string{}
		for range n {
			k := str()
			e.Detail[k] = str()
			if err != nil {
				break
			}
		}
	}
	e.PrevHash = []byte(str())
	if err == nil && r.Len() != 0 {
		err = errors.New("bytes left over")
	}
	return e, err
}

func FuzzAuditEncoding(f *testing.F) {
	s := sampleEntry()
	f.Add(s.Seq, s.At.UnixMicro(), s.Actor, s.Address, s.Action, s.Object, s.Reason, "forge", "github", "clone_url", "x", s.PrevHash)
	f.Add(int64(1), int64(0), "", "", "", "", "", "", "", "", "", []byte{})
	f.Add(int64(-1), int64(-1), "a\x00b", "\xff", "é", "build:1", "why\nnot", "k", "", "k", "v", []byte("\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, seq, micros int64, actor, address, action, object, reason, k1, v1, k2, v2 string, prev []byte) {
		e := &AuditEntry{Seq: seq, At: time.UnixMicro(micros).UTC(), Actor: actor, Address: address, Action: action,
			Object: object, Reason: reason, Detail: map[string]string{k1: v1, k2: v2}, PrevHash: prev}
		var buf bytes.Buffer
		writeAudit(&buf, e)
		got, err := decodeAudit(buf.Bytes())
		if err != nil {
			t.Fatalf("decoding the encoding of %+v: %v", e, err)
		}
		if diff := cmp.Diff(e, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("decode(encode(e)) differs (-e +got):\n%s", diff)
		}
	})
}
