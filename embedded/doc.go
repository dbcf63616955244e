// Package embedded runs nats-server in-process with JetStream: a single
// node, or one server of a JetStream cluster whose peers are listed
// (Config.Peers) or found in DNS (Config.Discover).
//
// Start returns as soon as the client port accepts connections; JetStream
// may need longer (a cluster needs its peers). WaitJetStream blocks until
// JetStream answers, Ready tells without blocking.
//
// # Addresses
//
// Client and route addresses default to loopback: Listen defaults to
// 127.0.0.1:4222, and an empty host in Listen or ClusterListen means
// 127.0.0.1, never all interfaces. Serving other machines takes an explicit
// host such as 0.0.0.0.
//
// # Cluster size
//
// A JetStream cluster that starts with empty stores elects its first meta
// leader only when all of its expected servers are up (nats-server does not
// let empty servers form a quorum among themselves); after that a majority
// suffices. nats-server takes the expected number from the count of
// configured routes when JetStream starts, so this package hands it exactly
// one route per expected server, its own included (nats-server dials its own
// route once, recognises itself and drops it). The expected size is:
//
//   - 1 without ClusterListen;
//   - with Peers only: the number of distinct Peers, counting this server
//     once whether or not it is listed (an entry is this server when its port
//     is the route port and its host is the listen host, the machine's host
//     name, or resolves to one of its addresses). Setting ClusterSize as
//     well turns a peer list that does not match into an error at Start
//     instead of a cluster that waits for a server that does not exist. A
//     "cluster" of one is rejected because its JetStream would never start;
//   - with Discover: ClusterSize, which is then required.
//
// A size of 2 is allowed with a warning: two servers lose their quorum when
// either dies. Three is the smallest cluster that survives a failure.
//
// # Discovery
//
// With Discover "dns:NAME[:PORT]" the name is resolved at start and then
// every DiscoverInterval; each address (A and AAAA records, such as those of
// a Kubernetes headless service) becomes a route to that address at PORT,
// which defaults to ClusterListen's port. Start does not wait for peers to
// appear: if fewer than ClusterSize servers are found, the route list is
// padded with copies of the server's own route, and if more are found (a
// stale record, say) the surplus is left out at first, so that a new
// cluster is always sized ClusterSize and waits for exactly that many
// servers. Addresses found later are added to the running server by
// reloading its options (server.ReloadOptions); addresses absent from the
// answers for max(12 DiscoverIntervals, 1 minute) are removed, so that the
// old addresses of restarted peers are not dialled forever. Once any route
// is up, nats-server's gossip connects all servers to each other.
//
// On Kubernetes the servers must find each other before any is ready, so
// the headless service needs publishNotReadyAddresses: true and the
// StatefulSet podManagementPolicy: Parallel; otherwise the first pod waits
// for peers that wait for it.
//
// Servers that start together form a cluster in about a second; a server
// that arrives last after the others have waited adds up to one election
// timeout (a few seconds) before the first leader is elected.
//
// # TLS and authentication
//
// TLSCert and TLSKey enable TLS for clients and routes. Route connections
// are always mutually authenticated, against TLSCA or else the system
// roots, so the certificate must allow both server and client use. Route certificates are verified against the host in Peers;
// discovered routes are IP addresses, so with Discover they are verified
// against NAME instead. User and
// Password or Token protect the client port; routes rely on TLS.
//
// # Logging
//
// nats-server's log goes to Config.Logger. Messages about routes connecting,
// failing to connect or closing, which repeat for every peer whenever a
// server starts or stops, are logged at Debug; so is the protocol trace,
// below Debug. Errors and warnings keep their level, except the warnings
// that every cluster start and every clean shutdown produce, which are
// logged at Info.
package embedded
