package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// Signal is a stop signal, written as SIGTERM, TERM, term or 15. The zero value means the
// default, SIGTERM. Convert with syscall.Signal(s).
type Signal syscall.Signal

// DefaultStopSignal is sent to a supervised command to ask it to stop.
const DefaultStopSignal = Signal(syscall.SIGTERM)

// ParseSignal reads a signal name with or without the SIG prefix, in any case, or its
// number on this platform.
func ParseSignal(s string) (Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "SIG")
	for name, sig := range signalNames {
		if name == t {
			return Signal(sig), nil
		}
	}
	if n, err := strconv.Atoi(t); err == nil {
		for _, sig := range signalNames {
			if int(sig) == n {
				return Signal(sig), nil
			}
		}
	}
	return 0, fmt.Errorf("unknown signal %q — use one of %s", s, strings.Join(signalList(), ", "))
}

// String is the conventional name, "SIGTERM"; 0 prints as the default.
func (s Signal) String() string {
	if s == 0 {
		s = DefaultStopSignal
	}
	for name, sig := range signalNames {
		if Signal(sig) == s {
			return "SIG" + name
		}
	}
	return "signal " + strconv.Itoa(int(s))
}

// MarshalText writes the name, so that a File round-trips through YAML.
func (s Signal) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses like ParseSignal; an empty text is 0 (the default).
func (s *Signal) UnmarshalText(text []byte) error {
	if strings.TrimSpace(string(text)) == "" {
		*s = 0
		return nil
	}
	v, err := ParseSignal(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// UnmarshalYAML parses a scalar; problems are returned as a *yaml.TypeError so that the
// decoder goes on and reports the rest of the file too.
func (s *Signal) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "expected a signal name like SIGTERM, got %s", describeKind(n))
	}
	if n.Tag == "!!null" {
		*s = 0
		return nil
	}
	if err := s.UnmarshalText([]byte(n.Value)); err != nil {
		return nodeError(n, "%s", err.Error())
	}
	return nil
}

// signalList is the valid names, in signal number order, for error messages.
func signalList() []string {
	names := make([]string, 0, len(signalNames))
	for name := range signalNames {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return signalNames[names[i]] < signalNames[names[j]] })
	for i, name := range names {
		names[i] = "SIG" + name
	}
	return names
}
