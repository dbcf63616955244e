package scheduler

import (
	"bytes"
	"testing"
	"time"
)

// Tick records (run and lease) come from the jobs bucket, which a person may write with
// `nats kv put`. Decoding must never panic, and what decodes re-encodes to a fixpoint.

func FuzzDecodeRun(f *testing.F) {
	f.Add("report.1764410400", []byte(`{"job":"report","tick":"2026-11-29T10:00:00Z","node":"a","token":7,"attempt":1,"state":"succeeded","reason":"scheduled","claimed":"2026-11-29T10:00:00.01Z","started":"2026-11-29T10:00:00.02Z","ended":"2026-11-29T10:00:02Z","claim":"x"}`))
	f.Add("report.last", []byte(`{"job":"report","state":"running"}`))
	f.Add("x", []byte(`{"tick":"not a time"}`))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		r, err := decodeRun(key, b)
		if err != nil {
			return
		}
		enc := r.encode()
		r2, err := decodeRun(key, enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if enc2 := r2.encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixpoint:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzDecodeLease(f *testing.F) {
	f.Add("report.1764410400.run", []byte(`{"job":"report","tick":"2026-11-29T10:00:00Z","node":"a","claim":"c","attempt":1,"state":"running","renewed":"2026-11-29T10:00:01Z","ttl":"15s"}`))
	f.Add("r.run", []byte(`{"job":"r","ttl":"x"}`))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		l, err := decodeLease(key, b)
		if err != nil {
			return
		}
		enc := l.encode()
		l2, err := decodeLease(key, enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if enc2 := l2.encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixpoint:\n%s\n%s", enc, enc2)
		}
	})
}

// Cron specs come from config files. Parsing must never panic, and a schedule that parses
// gives ticks strictly after the time asked about (or none).
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "0 */5 * * * *", "@every 10m", "@hourly", "0 0 29 2 *", "59 23 31 12 *", "@every 1s", "0 0 * * MON-FRI", "61 * * * *", "@every 0s", "TZ=UTC * * * * *"} {
		f.Add(s)
	}
	start := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSchedule(spec, time.UTC)
		if err != nil {
			return
		}
		at := start
		for range 3 {
			next := s.Next(at)
			if next.IsZero() {
				return
			}
			if !next.After(at) {
				t.Fatalf("%q: Next(%v) = %v, not after", spec, at, next)
			}
			at = next
		}
	})
}
