package kv

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	tests := []struct {
		name string
		want string // "" = valid; otherwise a substring of the error
	}{
		{"billing", ""},
		{"tenant-42.feed_7", ""},
		{long, ""},
		{long + "a", "129 characters"},
		{"", "must not be empty"},
		{"a b", "' ' (space) is not allowed"},
		{"a*", "wildcard"},
		{"a>b", "wildcard"},
		{"a/b", "'/' is not allowed"},
		{"é", "'é' (U+00E9) is not allowed"},
		{".a", "must not start"},
		{"a.", "must not end"},
		{"a..b", "must not contain"},
		{"a\x01", "control character"},
	}
	for _, tt := range tests {
		err := ValidName("worker", tt.name)
		if tt.want == "" {
			if err != nil {
				t.Errorf("ValidName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidName containing %q", tt.name, err, tt.want)
		}
	}
}
