package config

import (
	"errors"
	"fmt"

	"github.com/jetcoord/coordinator/kv"
)

// MaxNameLen is the longest worker, job or node name.
const MaxNameLen = kv.MaxNameLen

// ValidName reports whether s can name a worker or a job (see kv.ValidName). The error
// matches ErrInvalidName and names the offending character:
//
//	invalid name "a b": ' ' (space) is not allowed (use letters, digits, '-', '_' and '.')
func ValidName(s string) error {
	return checkName("name", s)
}

// nameError wraps kv's message so that it matches this package's ErrInvalidName.
type nameError struct{ msg string }

func (e *nameError) Error() string { return e.msg }

func (e *nameError) Is(target error) bool {
	return target == ErrInvalidName || target == kv.ErrInvalidName
}

// checkName validates s; kind is "name", "worker name", "job name" or "node.name".
func checkName(kind, s string) error {
	var ne *kv.NameError
	if err := kv.ValidName("", s); errors.As(err, &ne) {
		return &nameError{msg: fmt.Sprintf("invalid %s %q: %s", kind, s, ne.Reason)}
	}
	return nil
}

func describeRune(r rune) string { return kv.DescribeRune(r) }
