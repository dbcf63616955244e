package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// levelTrace sits below Debug: nats-server's protocol traces are far
// chattier than anything else we log at Debug.
const levelTrace = slog.LevelDebug - 4

// natsLogger adapts slog to server.Logger.
type natsLogger struct {
	log *slog.Logger

	// Until then, messages that every cluster start produces are not
	// warnings. Zero means the server has not started.
	settledAt atomic.Int64 // unix nanoseconds

	// Set by Shutdown: what nats-server warns about while stopping is
	// expected then.
	stopping atomic.Bool

	mu    sync.Mutex
	fatal string // first Fatalf message; nats-server expects the process to exit there
}

// startupGrace is how long after start a cluster may take to find its peers
// and meta leader before the messages about them become warnings again.
const startupGrace = time.Minute

// routeNoise lists messages that only say a peer is (not yet, or no longer)
// reachable. In a cluster that is starting, restarting or losing a node they
// repeat for every peer and say nothing that JetStream readiness does not.
var routeNoise = []string{
	"Error trying to connect to route",
	"Route connection created",
	"Route connection closed",
	"Router connection closed",
	"route to self",
	"Detected duplicate remote route",
	"Removed route",
	"Reloaded: cluster routes",
	"Waiting for routing to be established",
	// Discovery reloads the options to change routes and logs that itself.
	"Reloaded: authorization users",
	"Reloaded: accounts",
	"Reloaded server configuration",
}

// routeConnNoise lists write errors on a route connection (prefixed
// "ADDR - rid:N - ") whose peer has just gone away.
var routeConnNoise = []string{
	"Error flushing",
	"broken pipe",
	"connection reset by peer",
	"use of closed network connection",
}

// startupNoise lists warnings that nats-server logs on every cluster start,
// before the peers are up.
var startupNoise = []string{
	"JetStream has not established contact with a meta leader",
}

// shutdownNoise lists warnings that nats-server logs on every clean
// shutdown of a clustered JetStream server.
var shutdownNoise = []string{
	"Metalayer blocking snapshot",
}

func containsAny(msg string, subs []string) bool {
	for _, n := range subs {
		if strings.Contains(msg, n) {
			return true
		}
	}
	return false
}

func (l *natsLogger) level(level slog.Level, msg string) slog.Level {
	if level <= slog.LevelDebug {
		return level
	}
	if containsAny(msg, routeNoise) || (strings.Contains(msg, " - rid:") && containsAny(msg, routeConnNoise)) {
		return slog.LevelDebug
	}
	if level > slog.LevelInfo && time.Now().UnixNano() < l.settledAt.Load() && containsAny(msg, startupNoise) {
		return slog.LevelInfo
	}
	if level > slog.LevelInfo && l.stopping.Load() && containsAny(msg, shutdownNoise) {
		return slog.LevelInfo
	}
	return level
}

func (l *natsLogger) emit(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimRight(fmt.Sprintf(format, v...), "\n")
	l.log.Log(ctx, l.level(level, msg), msg)
}

// Noticef is nats-server's banner and routine progress: Debug, the coordinator logs what matters.
func (l *natsLogger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.emit(levelTrace, format, v) }

// Fatalf must not exit: the server is in-process. Start reports the message
// as its error instead.
func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, v...), "\n")
	l.mu.Lock()
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
	l.log.Error(msg)
}

func (l *natsLogger) fatalMsg() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}
