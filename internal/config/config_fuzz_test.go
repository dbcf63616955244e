package config

import (
	"os"
	"testing"
)

// The config file comes from users. Parse must never panic, and a file that parses
// without problems validates (check and run must agree).
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../deploy/coordinator.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"workers:\n  - name: w\n    command: [/bin/true]\n",
		"jobs:\n  - name: j\n    schedule: '@every 1m'\n    command: x\n",
		"x-d: &d {restart: never}\nworkers:\n  - {<<: *d, name: w, command: [a]}\n",
		"timing:\n  ttl: 2s\n  renew_interval: 1s\n",
		"node:\n  listen: 0.0.0.0:4222\ninsecure: true\n",
		"nats:\n  url: nats://a:4222\n  domain: hub\n",
		"---\n---\n",
		"\t bad",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parse("fuzz.yaml", data, func(string) string { return "" })
		if err != nil {
			return
		}
		if err := file.Validate(); err != nil {
			t.Fatalf("parsed without problems, but Validate says: %v\n%s", err, data)
		}
	})
}
