package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// streamInfo asks the servers at urls about stream.
func streamInfo(ctx context.Context, urls, stream string) (*jetstream.StreamInfo, error) {
	nc, err := nats.Connect(urls, nats.Name("cluster-harness"), nats.Timeout(2*time.Second),
		nats.MaxReconnects(0), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return nil, fmt.Errorf("cluster: connect %s: %w", urls, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("cluster: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: stream %s info: %w", stream, err)
	}
	return info, nil
}

// streamLeader asks the servers at urls which server leads stream.
func streamLeader(ctx context.Context, urls, stream string) (string, error) {
	info, err := streamInfo(ctx, urls, stream)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("cluster: stream %s has no leader right now", stream)
	}
	return info.Cluster.Leader, nil
}

// moveStreamLeader asks the leader of stream to step down in favour of server.
func moveStreamLeader(ctx context.Context, urls, stream, server string) error {
	nc, err := nats.Connect(urls, nats.Name("cluster-harness"), nats.Timeout(2*time.Second),
		nats.MaxReconnects(0), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("cluster: connect %s: %w", urls, err)
	}
	defer nc.Close()
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": server}})
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, req)
	if err != nil {
		return fmt.Errorf("cluster: step down the leader of %s: %w", stream, err)
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("cluster: step down the leader of %s: %w", stream, err)
	}
	if resp.Error != nil && !strings.Contains(resp.Error.Description, "already leader") {
		return fmt.Errorf("cluster: step down the leader of %s: %s", stream, resp.Error.Description)
	}
	return nil
}
