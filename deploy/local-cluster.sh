#!/usr/bin/env bash
# Three coordinator nodes on this machine, in one terminal: `make cluster`, or
#
#   deploy/local-cluster.sh [BINARY]        (default ./bin/coordinator)
#
# node1..node3 listen on 127.0.0.1 only: clients on 4222-4224, routes on 6222-6224, HTTP on
# 8080-8082, stores in ./data/node1..3. They run deploy/demo.yaml, whose worker runs on one
# of them. Every output line starts with its node's name. Ctrl-C stops all three cleanly:
# workers stopped, each node exits 0 within a few seconds (a node whose release finds the
# cluster already gone says so once and leaves the claim to expire after one TTL). A second
# Ctrl-C makes them exit at once.
#
# Try, in another terminal:
#   ./bin/coordinator status                         # any node: --nats nats://127.0.0.1:4223
#   kill -9 <pid of the owner>                       # the worker moves after one TTL (15s)
#
# Environment: COORD_CONFIG (default deploy/demo.yaml), COORD_DATA_ROOT (default ./data),
# COORD_CLIENT_PORT, COORD_ROUTE_PORT, COORD_HTTP_PORT (first ports, default 4222, 6222,
# 8080), COORD_LOG_FORMAT (default text).
set -u

coordinator=${1:-./bin/coordinator}
config=${COORD_CONFIG:-deploy/demo.yaml}
data_root=${COORD_DATA_ROOT:-./data}
client_port=${COORD_CLIENT_PORT:-4222}
route_port=${COORD_ROUTE_PORT:-6222}
http_port=${COORD_HTTP_PORT:-8080}
log_format=${COORD_LOG_FORMAT:-text}

if [ ! -x "$coordinator" ]; then
	echo "local-cluster: $coordinator is not an executable; run 'make build' first or pass the binary" >&2
	exit 2
fi

peers="127.0.0.1:$route_port,127.0.0.1:$((route_port + 1)),127.0.0.1:$((route_port + 2))"

# Each node in its own process group (job control), so that the terminal's Ctrl-C reaches
# only this script, which then stops each node exactly once: a second signal would make a
# node exit without releasing its claims.
set -m

# prefix copies its input to stdout with "NAME | " in front of each line. It ignores
# INT and TERM so that it keeps going until its node has written its last line.
prefix() {
	trap '' INT TERM
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		printf '%-5s | %s\n' "$1" "$line"
	done
}

pids=()
names=()
stopping=0
stop() {
	if [ "$stopping" = 1 ]; then
		echo "local-cluster: stopping again: nodes exit at once" >&2
	else
		echo "local-cluster: stopping ${names[*]:-}" >&2
	fi
	stopping=1
	local pid
	for pid in ${pids[@]+"${pids[@]}"}; do
		kill -TERM "$pid" 2>/dev/null
	done
}
trap stop INT TERM

for i in 0 1 2; do
	mkdir -p "$data_root/node$((i + 1))" || exit 1
done
for i in 0 1 2; do
	[ "$stopping" = 1 ] && break
	name="node$((i + 1))"
	"$coordinator" run \
		--config "$config" \
		--name "$name" \
		--data "$data_root/$name" \
		--listen "127.0.0.1:$((client_port + i))" \
		--cluster-listen "127.0.0.1:$((route_port + i))" \
		--peers "$peers" \
		--http "127.0.0.1:$((http_port + i))" \
		--log-format "$log_format" \
		> >(prefix "$name") 2>&1 &
	pids+=("$!")
	names+=("$name")
done
echo "local-cluster: started ${names[*]:-} (pids ${pids[*]:-}); Ctrl-C stops them" >&2

# Wait for all nodes. When one exits on its own, stop the others too. A background sleep
# (not a foreground one) keeps the terminal's signals for this script; wait returns as soon
# as a trapped signal arrives.
status=0
exited=()
remaining=${#pids[@]}
while [ "$remaining" -gt 0 ]; do
	for ((i = 0; i < ${#pids[@]}; i++)); do
		[ -n "${exited[$i]:-}" ] && continue
		kill -0 "${pids[$i]}" 2>/dev/null && continue
		wait "${pids[$i]}"
		rc=$?
		exited[$i]=1
		remaining=$((remaining - 1))
		echo "local-cluster: ${names[$i]} exited with status $rc" >&2
		[ "$rc" -ne 0 ] && status=1
		[ "$stopping" = 0 ] && stop
	done
	[ "$remaining" -gt 0 ] || break
	sleep 0.5 &
	wait "$!" 2>/dev/null
done
# Let the prefixers write the nodes' last lines.
wait 2>/dev/null
exit "$status"
