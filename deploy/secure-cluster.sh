#!/usr/bin/env bash
# Three coordinator nodes on this machine with TLS and a password: `make secure-cluster`, or
#
#   deploy/secure-cluster.sh [BINARY]        (default ./bin/coordinator)
#
# Like deploy/local-cluster.sh (same ports: clients 4222-4224, routes 6222-6224, HTTP
# 8080-8082, all on 127.0.0.1), plus: TLS on the client ports, mutual TLS on the routes and
# a user "coordinator" with a password. On first run it makes what it needs in the data
# directory (./data/secure by default, COORD_DATA_ROOT to change):
#   tls/ca.crt, tls/ca.key, tls/tls.crt, tls/tls.key   (coordinator certs; no openssl needed)
#   password                                          (random, mode 600)
# and keeps them afterwards. Ctrl-C stops the nodes.
set -u

coordinator=${1:-./bin/coordinator}
data_root=${COORD_DATA_ROOT:-./data/secure}
client_port=${COORD_CLIENT_PORT:-4222}

if [ ! -x "$coordinator" ]; then
	echo "secure-cluster: $coordinator is not an executable; run 'make build' first or pass the binary" >&2
	exit 2
fi
mkdir -p "$data_root" || exit 1
tls="$data_root/tls"
"$coordinator" certs --dir "$tls" --hosts localhost,127.0.0.1,::1 >&2 || exit 1
if [ ! -s "$data_root/password" ]; then
	(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$data_root/password") || exit 1
	echo "secure-cluster: wrote $data_root/password" >&2
fi

export COORD_NATS_USER=coordinator
COORD_NATS_PASSWORD=$(cat "$data_root/password")
export COORD_NATS_PASSWORD
export COORD_DATA_ROOT="$data_root"
export COORD_SERVER_TLS_CERT="$tls/tls.crt" COORD_SERVER_TLS_KEY="$tls/tls.key" COORD_SERVER_TLS_CA="$tls/ca.crt"

cat >&2 <<INFO
secure-cluster: TLS and user "coordinator" on nats://127.0.0.1:$client_port-$((client_port + 2)).
Inspect it, in another terminal:

  export COORD_NATS_USER=coordinator COORD_NATS_PASSWORD=\$(cat $data_root/password) COORD_NATS_TLS_CA=$tls/ca.crt
  $coordinator status

  nats context save coord-secure --server nats://127.0.0.1:$client_port --tlsca $tls/ca.crt \\
      --user coordinator --password "\$(cat $data_root/password)"
  nats --context coord-secure kv ls
  nats --context coord-secure kv get coord_workers hello
  nats --context coord-secure sub 'coord.events.>'

Without the password or the CA, clients are refused; a server without a certificate from
$tls/ca.crt cannot join the routes.
INFO

exec "$(dirname "$0")/local-cluster.sh" "$coordinator"
