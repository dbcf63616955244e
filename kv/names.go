package kv

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxNameLen is the longest worker, job or node name.
const MaxNameLen = 128

const nameHint = "(use letters, digits, '-', '_' and '.')"

// NameError is the error of ValidName. It matches ErrInvalidName.
type NameError struct {
	Kind   string // "worker", "job", "node", ...
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid %s name %q: %s", e.Kind, e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidName) true.
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

// ValidName reports whether name can be a key in a coordination bucket and a token in an
// event subject: [A-Za-z0-9_-] with '.' between non-empty parts, 1–128 characters. kind
// ("worker", "job", "node") is used in the message, which names the offending character:
//
//	invalid worker name "a b": ' ' (space) is not allowed (use letters, digits, '-', '_' and '.')
func ValidName(kind, name string) error {
	if reason := NameProblem(name); reason != "" {
		return &NameError{Kind: kind, Name: name, Reason: reason}
	}
	return nil
}

// NameProblem returns what is wrong with name, or "" if nothing is.
func NameProblem(s string) string {
	if s == "" {
		return "must not be empty " + nameHint
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		case r == '.':
			switch {
			case i == 0:
				return "must not start with '.' (use '.' only between parts, like \"billing.eu\")"
			case i == len(s)-1:
				return "must not end with '.' (use '.' only between parts, like \"billing.eu\")"
			case s[i+1] == '.':
				return "must not contain \"..\" (use '.' only between parts, like \"billing.eu\")"
			}
		case r == utf8.RuneError:
			return "is not valid UTF-8 " + nameHint
		default:
			return DescribeRune(r) + " is not allowed " + nameHint
		}
	}
	if len(s) > MaxNameLen {
		return fmt.Sprintf("is %d characters long, the limit is %d", len(s), MaxNameLen)
	}
	return ""
}

// DescribeRune names a character for an error message: ' ' (space), '*' (a NATS
// wildcard), 'é' (U+00E9).
func DescribeRune(r rune) string {
	q := strconv.QuoteRune(r)
	switch {
	case r == ' ':
		return q + " (space)"
	case r == '\t':
		return q + " (tab)"
	case r == '*' || r == '>':
		return q + " (a NATS wildcard)"
	case r < 0x20 || r == 0x7f:
		return fmt.Sprintf("%U (a control character)", r)
	case r > 0x7f:
		return fmt.Sprintf("%s (%U)", q, r)
	}
	return q
}
