//go:build race

package ownership

// raceEnabled: the race detector slows the engine and the in-process server several times
// over; tests with thousands of workers scale down.
const raceEnabled = true
