package embedded

import (
	"log/slog"
	"testing"
	"time"
)

func TestLoggerLevels(t *testing.T) {
	h := &recordHandler{}
	l := &natsLogger{log: slog.New(h)}
	l.settledAt.Store(time.Now().Add(time.Hour).UnixNano())

	l.Errorf("Error trying to connect to route (attempt %v): %v", 1, "dial tcp 127.0.0.1:6222: connect: connection refused")
	l.Errorf("127.0.0.1:6222 - rid:5 - Error flushing: writev tcp: broken pipe")
	l.Warnf("JetStream has not established contact with a meta leader")
	l.Errorf("127.0.0.1:6222 - rid:5 - Remote server has a duplicate name: %q", "a")
	l.Warnf("JetStream cluster stream '%s' has NO quorum, stalled", "$G > KV_x")
	l.Noticef("Server is ready")
	l.Fatalf("Error listening on port: %s, %q", "127.0.0.1:4222", "address already in use")

	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelDebug, "Error trying to connect to route (attempt 1): dial tcp 127.0.0.1:6222: connect: connection refused"},
		{slog.LevelDebug, "127.0.0.1:6222 - rid:5 - Error flushing: writev tcp: broken pipe"},
		{slog.LevelInfo, "JetStream has not established contact with a meta leader"},
		{slog.LevelError, `127.0.0.1:6222 - rid:5 - Remote server has a duplicate name: "a"`},
		{slog.LevelWarn, "JetStream cluster stream '$G > KV_x' has NO quorum, stalled"},
		{slog.LevelDebug, "Server is ready"}, // the banner and routine notices
		{slog.LevelError, `Error listening on port: 127.0.0.1:4222, "address already in use"`},
	}
	for _, w := range want {
		if !h.find(w.level, w.msg) {
			t.Errorf("no %v record %q", w.level, w.msg)
		}
	}
	if got := l.fatalMsg(); got != want[len(want)-1].msg {
		t.Errorf("fatalMsg() = %q", got)
	}

	// After the start-up grace the same warning is a warning again.
	l.settledAt.Store(time.Now().Add(-time.Second).UnixNano())
	l.Warnf("JetStream has not established contact with a meta leader")
	if !h.find(slog.LevelWarn, "JetStream has not established contact with a meta leader") {
		t.Error("meta leader warning after the grace period is not a warning")
	}
}
