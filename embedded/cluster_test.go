package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestClusterOfThree(t *testing.T) {
	t.Parallel()
	servers := startCluster(t, 3)
	for _, s := range servers {
		if s.ClusterSize() != 3 {
			t.Errorf("%s: ClusterSize() = %d, want 3", s.cfg.Name, s.ClusterSize())
		}
	}
	waitJetStream(t, 30*time.Second, servers...)
	for _, s := range servers {
		if !s.Ready() {
			t.Errorf("%s: Ready() = false after WaitJetStream", s.cfg.Name)
		}
		// Listing ourselves in Peers or not must give the same meta group.
		waitMetaSize(t, s, 3)
	}

	js := connect(t, servers[1])
	var kv jetstream.KeyValue
	eventually(t, 20*time.Second, func(ctx context.Context) (err error) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "r3", Replicas: 3})
		return err
	})
	eventually(t, 10*time.Second, func(ctx context.Context) error {
		_, err := kv.Put(ctx, "k", []byte("v"))
		return err
	})
}

func TestClusterSurvivesLossOfOne(t *testing.T) {
	t.Parallel()
	servers := startCluster(t, 3)
	waitJetStream(t, 30*time.Second, servers...)

	js := connect(t, servers[0])
	var kv jetstream.KeyValue
	eventually(t, 20*time.Second, func(ctx context.Context) (err error) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "survive", Replicas: 3})
		return err
	})
	eventually(t, 10*time.Second, func(ctx context.Context) error {
		_, err := kv.Put(ctx, "before", []byte("1"))
		return err
	})

	// Kill the meta leader: the harder case, the survivors must elect one.
	victim := -1
	for i, s := range servers {
		if s.NATS().JetStreamIsLeader() {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatal("no server is the JetStream meta leader")
	}
	servers[victim].Shutdown()
	var alive []*Server
	for i, s := range servers {
		if i != victim {
			alive = append(alive, s)
		}
	}
	waitJetStream(t, 30*time.Second, alive...)

	// The victim may also have led the bucket's stream: binding to it and
	// writing wait for that election too.
	for _, s := range alive {
		js := connect(t, s)
		var kv jetstream.KeyValue
		eventually(t, 20*time.Second, func(ctx context.Context) (err error) {
			kv, err = js.KeyValue(ctx, "survive")
			return err
		})
		eventually(t, 20*time.Second, func(ctx context.Context) error {
			_, err := kv.Put(ctx, "after-"+s.cfg.Name, []byte("2"))
			return err
		})
		eventually(t, 10*time.Second, func(ctx context.Context) error {
			_, err := kv.Get(ctx, "before")
			return err
		})
	}
}
