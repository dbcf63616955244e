package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// The harness gives every node the same --peers (the real route addresses) and has no way
// to set them per node. The chaos suite therefore runs each node through this binary in
// the role of the coordinator: it rewrites --peers to the route proxies (routeNet) and
// execs the real coordinator in its place, so the pid the harness signals is the
// coordinator's own.
const (
	envRealCoordinator = "CHAOS_REAL_COORDINATOR" // path of the real binary
	envRouteMap        = "CHAOS_ROUTE_MAP"        // file of "real proxied" route addresses
)

// wrapCoordinator execs real with args, --peers rewritten for `run`. It returns only on
// failure.
func wrapCoordinator(real string, args []string) int {
	if len(args) > 0 && args[0] == "run" {
		m, err := readRouteMap(os.Getenv(envRouteMap))
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos wrapper: %v\n", err)
			return 2
		}
		args = append([]string(nil), args...)
		for i, a := range args {
			switch {
			case (a == "--peers" || a == "-peers") && i+1 < len(args):
				args[i+1] = rewritePeers(args[i+1], selfRoute(args), m)
			case strings.HasPrefix(a, "--peers="):
				args[i] = "--peers=" + rewritePeers(strings.TrimPrefix(a, "--peers="), selfRoute(args), m)
			}
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHAOS_") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec(real, append([]string{real}, args...), env)
	fmt.Fprintf(os.Stderr, "chaos wrapper: exec %s: %v\n", real, err)
	return 127
}

// selfRoute is the node's own --cluster-listen: it stays as it is in --peers, so that the
// embedded server recognises itself.
func selfRoute(args []string) string {
	for i, a := range args {
		if (a == "--cluster-listen" || a == "-cluster-listen") && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--cluster-listen="); ok {
			return v
		}
	}
	return ""
}

func rewritePeers(list, self string, m map[string]string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == self {
			continue
		}
		if to, ok := m[p]; ok {
			parts[i] = to
		}
	}
	return strings.Join(parts, ",")
}

func readRouteMap(path string) (map[string]string, error) {
	if path == "" {
		return nil, fmt.Errorf("%s is not set", envRouteMap)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 2 {
			m[fs[0]] = fs[1]
		}
	}
	return m, sc.Err()
}
