package config

// The time zone database is embedded, so that a job's timezone is found (and validated
// the same way) on every node, also in containers without /usr/share/zoneinfo.
import _ "time/tzdata"
