package config

import (
	"errors"
	"strings"
	"testing"
)

// envOf turns a map into a getenv; nil is an empty environment, so that tests do not
// depend on the COORD_* variables of whoever runs them.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustParse(t *testing.T, yaml string, env map[string]string) File {
	t.Helper()
	f, err := parse("t.yaml", []byte(yaml), envOf(env))
	if err != nil {
		t.Fatalf("parse: unexpected problems:\n%v", err)
	}
	return f
}

// problemsOf parses and returns the problems, failing when there are none.
func problemsOf(t *testing.T, yaml string, env map[string]string) []Problem {
	t.Helper()
	_, err := parse("t.yaml", []byte(yaml), envOf(env))
	return asProblems(t, err)
}

func asProblems(t *testing.T, err error) []Problem {
	t.Helper()
	if err == nil {
		t.Fatal("want problems, got none")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %T: %v", err, err)
	}
	return e.Problems
}

// findProblem returns the problem at line whose message contains all words.
func findProblem(ps []Problem, line int, words ...string) (Problem, bool) {
next:
	for _, p := range ps {
		if p.Line != line {
			continue
		}
		for _, w := range words {
			if !strings.Contains(p.Msg, w) {
				continue next
			}
		}
		return p, true
	}
	return Problem{}, false
}

func dump(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("\n\t" + p.String())
	}
	return b.String()
}
