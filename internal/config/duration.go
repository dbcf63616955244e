package config

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as in Go: "15s", "1m30s", "500ms". A bare number other
// than 0 is refused, because "15" could mean seconds or milliseconds. Convert with
// time.Duration(d).
type Duration time.Duration

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the Go notation, so that a File round-trips through YAML.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the Go notation; an empty text is 0. It serves environment
// variables and flag.TextVar.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML parses a scalar; any problem is returned as a *yaml.TypeError so that the
// decoder goes on and reports the rest of the file too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "expected a duration like 15s, got %s — write a number with a unit, e.g. 15s or 1m30s", describeKind(n))
	}
	if n.Tag == "!!null" {
		*d = 0
		return nil
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return nodeError(n, "%s", err.Error())
	}
	*d = v
	return nil
}

const durationFix = "write a number with a unit (ms, s, m, h), e.g. 15s or 1m30s"

func parseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err == nil {
		return Duration(v), nil
	}
	// time: unknown unit " parsecs" in duration "15 parsecs"
	reason := strings.TrimPrefix(err.Error(), "time: ")
	reason = strings.TrimSuffix(reason, fmt.Sprintf(" in duration %q", s))
	fix := durationFix
	switch {
	case strings.HasPrefix(reason, "invalid duration"):
		reason = ""
	case strings.HasPrefix(reason, "missing unit"):
		fix = fmt.Sprintf("add a unit: %ss, %sm or %sms", s, s, s)
	case strings.HasSuffix(s, "d") && strings.HasPrefix(reason, "unknown unit"):
		fix = "there is no unit for days: write hours, e.g. 24h"
	}
	if reason != "" {
		reason = ": " + reason
	}
	return 0, fmt.Errorf("invalid duration %q%s — %s", s, reason, fix)
}

// nodeError reports a problem with one YAML node in the shape the decoder collects; the
// column lets Parse find the key it belongs to.
func nodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{
		fmt.Sprintf("line %d: column %d: %s", n.Line, n.Column, fmt.Sprintf(format, args...)),
	}}
}

// describeKind says what a node is, for "expected X, got Y".
func describeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}
