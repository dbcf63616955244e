package scheduler

import (
	"context"

	"github.com/jetcoord/coordinator/kv"
)

// readDecisive reads key for a decision that a stale answer would make unsafe: whether a
// run is lost (checkGone), whether this node's own write landed after its reply was lost
// (records, leases), and the anchor that a job's catch-up starts from. Buckets allow direct
// gets, which a lagging follower may answer; such reads must be served by the stream
// leader (issue 12, point 4). They all go through here so that routing them to the leader
// is a change in one place, made together with the kv package's leader read.
//
// Reads that only save work or inform (the read before a claim, whose compare-and-set
// decides; status; a stop request, which its holder checks at the revision it renews) use
// the bucket's Get.
func (j *job) readDecisive(ctx context.Context, key string) (kv.Entry, error) {
	return j.s.bucket.Get(ctx, key)
}
