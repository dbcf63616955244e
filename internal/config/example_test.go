package config_test

import (
	"fmt"

	"github.com/jetcoord/coordinator/internal/config"
)

func Example() {
	f, err := config.Parse("coordinator.yaml", []byte(`
timing:
  ttl: 5s
workers:
  - name: billing
    command: ["/usr/bin/billing", "--once"]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	w, t := f.Workers[0], f.Timing.Resolve()
	fmt.Println(w.Name, w.Command, w.Restart, w.StopSignal, w.StopGrace)
	fmt.Println(t.TTL, t.RenewInterval, t.RenewDeadline, t.FenceGrace)
	// Output:
	// billing [/usr/bin/billing --once] always SIGTERM 10s
	// 5s 1s 4s 500ms
}

func ExampleParse_problems() {
	_, err := config.Parse("coordinator.yaml", []byte(`
workers:
  - name: billing
    command: /usr/bin/billing
    stop-grace: 5s
  - name: billing
jobs:
  - name: report
    schedule: "61 * * * *"
    command: ["/usr/bin/report"]
`))
	fmt.Println(err)
	// Output:
	// coordinator.yaml:5: unknown key "stop-grace" in workers[0] "billing" — did you mean stop_grace? (valid keys: name, command, env, dir, restart, stop_signal, stop_grace, call)
	// coordinator.yaml:6: workers[1] "billing": name "billing" is already used by workers[0] (line 3) — names must be unique across workers and jobs; rename one of them
	// coordinator.yaml:6: workers[1] "billing": command is missing — add command: ["/path/to/program", "arg"]
	// coordinator.yaml:9: jobs[0] "report": invalid schedule "61 * * * *": minute field "61": end of range (61) above maximum (59) — see https://pkg.go.dev/github.com/robfig/cron/v3
}
