package ownership

import "github.com/jetcoord/coordinator/lease"

// Clock is the time source of the engine: lease.Clock, shared with the scheduler, so that
// one injected clock drives every lease. Lease deadlines and takeover timers rely on its
// readings being monotonic; the real clock's are. Tests may inject their own.
type Clock = lease.Clock

// Timer is a stoppable timer from a Clock.
type Timer = lease.Timer

// RealClock is the wall and monotonic clock of the machine.
type RealClock = lease.RealClock
