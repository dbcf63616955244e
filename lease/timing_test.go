package lease

import (
	"errors"
	"testing"
	"time"
)

// The defaults are the README's "Timing" table; change both together.
func TestDefaultTiming(t *testing.T) {
	want := Timing{TTL: 15 * time.Second, RenewInterval: 3 * time.Second, RenewDeadline: 12 * time.Second,
		FenceGrace: 2500 * time.Millisecond, ShutdownGrace: 30 * time.Second}
	if got := DefaultTiming(); got != want {
		t.Fatalf("DefaultTiming() = %+v, want %+v", got, want)
	}
	if err := DefaultTiming().Validate(); err != nil {
		t.Fatal(err)
	}
	consts := Timing{TTL: DefaultTTL, RenewInterval: DefaultRenewInterval, RenewDeadline: DefaultRenewDeadline,
		FenceGrace: DefaultFenceGrace, ShutdownGrace: DefaultShutdownGrace}
	if consts != want {
		t.Fatalf("Default* constants = %+v, want %+v", consts, want)
	}
	if got := (Timing{}).Derive(); got != want {
		t.Fatalf("Timing{}.Derive() = %+v", got)
	}
}

func TestDerive(t *testing.T) {
	for _, tt := range []struct {
		in, want Timing
	}{
		{Timing{TTL: 5 * time.Second}, Timing{TTL: 5 * time.Second, RenewInterval: time.Second, RenewDeadline: 4 * time.Second,
			FenceGrace: 500 * time.Millisecond, ShutdownGrace: 30 * time.Second}},
		// A small gap keeps half of it back instead of the whole margin.
		{Timing{TTL: 2 * time.Second}, Timing{TTL: 2 * time.Second, RenewInterval: 400 * time.Millisecond,
			RenewDeadline: 1600 * time.Millisecond, FenceGrace: 200 * time.Millisecond, ShutdownGrace: 30 * time.Second}},
		// Set fields stay; only the rest are derived.
		{Timing{TTL: 15 * time.Second, RenewDeadline: 8 * time.Second, FenceGrace: 6 * time.Second},
			Timing{TTL: 15 * time.Second, RenewInterval: 3 * time.Second, RenewDeadline: 8 * time.Second,
				FenceGrace: 6 * time.Second, ShutdownGrace: 30 * time.Second}},
		{Timing{TTL: 15 * time.Second, RenewDeadline: 8 * time.Second}, Timing{TTL: 15 * time.Second, RenewInterval: 3 * time.Second,
			RenewDeadline: 8 * time.Second, FenceGrace: 6500 * time.Millisecond, ShutdownGrace: 30 * time.Second}},
	} {
		if got := tt.in.Derive(); got != tt.want {
			t.Errorf("%+v.Derive() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	s := time.Second
	for _, tt := range []struct {
		name  string
		in    Timing
		rule  Rule
		field string
	}{
		{"defaults", Timing{}, 0, ""},
		{"issue 12 case 8", Timing{TTL: 15 * s, RenewDeadline: 8 * s, FenceGrace: 6 * s}, 0, ""},
		{"negative", Timing{FenceGrace: -s}, RuleNegative, "FenceGrace"},
		{"ttl too short", Timing{TTL: 500 * time.Millisecond}, RuleTTLTooShort, "TTL"},
		{"interval not below deadline", Timing{RenewInterval: 12 * s}, RuleIntervalBeforeDeadline, "RenewInterval"},
		{"deadline not below ttl", Timing{RenewDeadline: 15 * s}, RuleDeadlineBeforeTTL, "RenewDeadline"},
		{"derived fence grace 1ns", Timing{TTL: 15 * s, RenewDeadline: 15*s - 1}, RuleFenceBeforeTTL, "RenewDeadline"},
		{"fence past ttl", Timing{FenceGrace: 3 * s}, RuleFenceBeforeTTL, "FenceGrace"},
		{"fence past ttl with short deadline set", Timing{TTL: 15 * s, FenceGrace: 6 * s}, RuleFenceBeforeTTL, "FenceGrace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if tt.rule == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var te *TimingError
			if !errors.As(err, &te) || !errors.Is(err, ErrInvalidTiming) {
				t.Fatalf("Validate() = %v, want a *TimingError", err)
			}
			if te.Rule != tt.rule || te.Field != tt.field {
				t.Fatalf("rule %d field %q, want %d %q (%v)", te.Rule, te.Field, tt.rule, tt.field, err)
			}
		})
	}
}
