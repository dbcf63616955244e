package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

// JSON logs give durations as strings ("1.5s"), text logs carry the date.
func TestLogFormats(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger(&b, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("x", "ttl", 1500*time.Millisecond)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["ttl"] != "1.5s" {
		t.Errorf("JSON duration = %#v, want \"1.5s\"", rec["ttl"])
	}
	b.Reset()
	log, err = newLogger(&b, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("x", "ttl", 1500*time.Millisecond)
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INF x ttl=1.5s`).Match(b.Bytes()) {
		t.Errorf("text log line %q lacks the date", b.String())
	}
}
