package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/lmittmann/tint"
)

// newLogger returns the daemon's logger: tint with colours on a terminal, JSON otherwise,
// or as format says (auto, text, json).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q: use debug, info, warn or error", level)
	}
	jsonOpts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationsAsStrings}
	switch strings.ToLower(format) {
	case "", "auto":
		if isTerminal(w) {
			return slog.New(tint.NewHandler(w, &tint.Options{Level: lv, TimeFormat: textTime})), nil
		}
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	case "text":
		return slog.New(tint.NewHandler(w, &tint.Options{Level: lv, TimeFormat: textTime, NoColor: !isTerminal(w)})), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	}
	return nil, fmt.Errorf("invalid log format %q: use auto, text or json", format)
}

// textTime carries the date: a log read the next day, or across midnight, must say when.
const textTime = "2006-01-02 15:04:05.000"

// durationsAsStrings writes durations as "1.5s" rather than nanoseconds, in JSON logs too.
func durationsAsStrings(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
