package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/config"
)

// --ttl replaces the TTL only: timings set in the file stay, as its help text says and as
// COORD_TTL does (issue 12, case 8b: --ttl used to discard them).
func TestTTLFlagKeepsFileTimings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("timing:\n  renew_deadline: 8s\n  fence_grace: 6s\n  shutdown_grace: 40s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T, args ...string) (config.Timing, error) {
		t.Helper()
		f := newRunFlags(io.Discard)
		if err := f.fs.Parse(append([]string{"--config", path}, args...)); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.loadConfig()
		return cfg.Timing.Resolve(), err
	}
	want := config.Timing{TTL: config.Duration(20 * time.Second), RenewInterval: config.Duration(4 * time.Second),
		RenewDeadline: config.Duration(8 * time.Second), FenceGrace: config.Duration(6 * time.Second),
		ShutdownGrace: config.Duration(40 * time.Second)}
	t.Run("flag", func(t *testing.T) {
		got, err := load(t, "--ttl", "20s")
		if err != nil || got != want {
			t.Fatalf("--ttl 20s: %+v, %v; want %+v", got, err, want)
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("COORD_TTL", "20s")
		got, err := load(t)
		if err != nil || got != want {
			t.Fatalf("COORD_TTL=20s: %+v, %v; want %+v", got, err, want)
		}
	})
	// A TTL too short for the file's timings is refused, not silently re-derived.
	t.Run("too short", func(t *testing.T) {
		_, err := load(t, "--ttl", "10s")
		if err == nil || !strings.Contains(err.Error(), "fence_grace") {
			t.Fatalf("--ttl 10s with renew_deadline 8s, fence_grace 6s: %v, want an error naming fence_grace", err)
		}
	})
}
