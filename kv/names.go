package kv

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest worker, job or node name.
const MaxNameLen = 128

const nameHint = "use letters, digits, '-', '_' and '.'"

// ValidName reports whether name can be a key in a coordination bucket and a token in an
// event subject: [A-Za-z0-9_-] with '.' between non-empty parts, 1–128 characters. kind
// ("worker", "job", "node") is used in the message. The error wraps ErrInvalidName.
func ValidName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty (%s)", ErrInvalidName, kind, nameHint)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %s name %q is %d characters long, the limit is %d", ErrInvalidName, kind, name, len(name), MaxNameLen)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		case r == '.':
			if i == 0 || i == len(name)-1 || name[i-1] == '.' {
				return fmt.Errorf("%w: invalid %s name %q: '.' separates parts and cannot start, end or repeat (%s)", ErrInvalidName, kind, name, nameHint)
			}
		case r == utf8.RuneError:
			return fmt.Errorf("%w: invalid %s name %q: not valid UTF-8 (%s)", ErrInvalidName, kind, name, nameHint)
		default:
			return fmt.Errorf("%w: invalid %s name %q: %s is not allowed (%s)", ErrInvalidName, kind, name, describeRune(r), nameHint)
		}
	}
	return nil
}

func describeRune(r rune) string {
	switch r {
	case ' ':
		return "' ' (space)"
	case '\t':
		return "'\\t' (tab)"
	case '*', '>':
		return fmt.Sprintf("%q (a NATS wildcard)", r)
	}
	if r < 0x20 || r == 0x7f {
		return fmt.Sprintf("%U (a control character)", r)
	}
	return strings.Trim(fmt.Sprintf("%q", r), `"`)
}
