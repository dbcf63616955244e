package kv

import (
	"bytes"
	"testing"
)

// Claim and node records come from outside: anyone with write access to a bucket, or
// `nats kv put` by hand. Decoding must never panic, and a record that decodes must
// re-encode to a fixpoint (what a node writes back is what it read).

func FuzzDecodeClaim(f *testing.F) {
	f.Add("billing", []byte(`{"worker":"billing","node":"node-a","incarnation":"01JD","token":4711,"acquired":"2026-11-29T10:00:00.123Z","renewed":"2026-11-29T10:00:07.456Z","ttl":"10s","state":"running","meta":{"call_key":"AAAA"}}`))
	f.Add("w", []byte(`{"worker":"w","node":"n","ttl":"1h0m0s"}`))
	f.Add("w", []byte(`{"worker":"w","node":"n","ttl":10}`))
	f.Add("w", []byte(`not json`))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		c, err := DecodeClaim(key, b)
		if err != nil {
			return
		}
		enc := c.Encode()
		c2, err := DecodeClaim(key, enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if enc2 := c2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixpoint:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzDecodeNode(f *testing.F) {
	f.Add("node-a", []byte(`{"node":"node-a","incarnation":"x","addresses":["nats://127.0.0.1:4222"],"version":"dev","started":"2026-11-29T10:00:00Z","renewed":"2026-11-29T10:00:01Z","capacity":2,"draining":true,"workers":"abc"}`))
	f.Add("n", []byte(`{"node":"n","capacity":-5}`))
	f.Add("n", []byte(`{"node":"m"}`))
	f.Add("n", []byte(`[]`))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		r, err := DecodeNode(key, b)
		if err != nil {
			return
		}
		if r.Capacity <= 0 {
			t.Fatalf("capacity %d after decoding %s", r.Capacity, b)
		}
		enc := r.Encode()
		r2, err := DecodeNode(key, enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if enc2 := r2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixpoint:\n%s\n%s", enc, enc2)
		}
	})
}
