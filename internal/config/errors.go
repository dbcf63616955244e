package config

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinels, matched with errors.Is.
var (
	// ErrInvalid is matched by every *Error: the configuration has at least one problem.
	ErrInvalid = errors.New("config: invalid configuration")
	// ErrInvalidName is matched by the errors of ValidName.
	ErrInvalidName = errors.New("config: invalid name")
)

// Problem is one thing wrong with a configuration. File and Line say where it is, when known:
// problems that come from the environment or from a File built in code have no line.
type Problem struct {
	File string // as passed to Load or Parse
	Line int    // 1-based; 0 when unknown
	Msg  string // what is wrong — and how to fix it
}

// String formats the problem the way compilers do: "file:line: msg".
func (p Problem) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return p.File + ":" + strconv.Itoa(p.Line) + ": " + p.Msg
	case p.File != "":
		return p.File + ": " + p.Msg
	case p.Line > 0:
		return "line " + strconv.Itoa(p.Line) + ": " + p.Msg
	}
	return p.Msg
}

// Error lists every problem found in a configuration, in file order. It matches ErrInvalid.
type Error struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return ErrInvalid.Error()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true for every *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }
