package cluster

import "github.com/jetcoord/coordinator/ownership"

// Status is the shape of `coordinator status --json` and of GET /status
// (ownership.Status); integration.TestStatusShape decodes the real output strictly into it.
type Status = ownership.Status

// WorkerStatus is one claim in a Status.
type WorkerStatus = ownership.WorkerStatus

// NodeStatus is one live node in a Status.
type NodeStatus = ownership.NodeStatus
