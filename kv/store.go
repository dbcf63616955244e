package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultNamespace prefixes every bucket, subject and stream of one coordinator cluster.
const DefaultNamespace = "coord"

// Options configure Open.
type Options struct {
	// Namespace prefixes buckets (<ns>_workers), subjects (<ns>.events.>) and the events
	// stream (<NS>_EVENTS). Default "coord".
	Namespace string
	// Replicas of each bucket and stream: 1 for one server, 3 in a cluster of three or more.
	// Default 1. An existing bucket keeps the replicas it was created with.
	Replicas int
	// JobRetention is how long tick claims and run records stay in the jobs bucket.
	// Default 7 days.
	JobRetention time.Duration
	// EventRetention is how long the events stream keeps events. Default 24h.
	EventRetention time.Duration
	// Storage of buckets and stream. Default file storage.
	Memory bool
	// Domain is the JetStream domain to use (a leaf node's or hub's jetstream domain).
	// Default "": the connection's own JetStream.
	Domain string
	// APIPrefix is a JetStream API prefix imported from another account, e.g.
	// "JS.acc.API". Default "": $JS.API. At most one of Domain and APIPrefix.
	APIPrefix string
	// BindOnly binds to existing buckets and stream and creates nothing: operator tools use
	// it, so that they never create a namespace with the wrong replica count. A missing
	// bucket returns ErrBucketNotFound.
	BindOnly bool
}

func (o *Options) setDefaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.JobRetention <= 0 {
		o.JobRetention = 7 * 24 * time.Hour
	}
	if o.EventRetention <= 0 {
		o.EventRetention = 24 * time.Hour
	}
}

// Store is the coordination store of one namespace: the workers, nodes and jobs buckets and
// the events stream.
type Store struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	opts    Options
	Workers *Bucket
	Nodes   *Bucket
	Jobs    *Bucket
	State   *Bucket

	workersCfg jetstream.KeyValueConfig
}

// markerTTL is how long expiry and delete markers stay in a bucket. Watchers must see them;
// after this they may go, which keeps deleted keys from piling up.
const markerTTL = 15 * time.Minute

// Open creates or binds the namespace's buckets and events stream. It is idempotent and safe
// to run on many nodes at once. It fails with ErrUnavailable (wrapped) when JetStream does
// not answer before ctx ends.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := ValidNamespace(opts.Namespace); err != nil {
		return nil, err
	}
	var js jetstream.JetStream
	var err error
	switch {
	case opts.Domain != "" && opts.APIPrefix != "":
		return nil, fmt.Errorf("kv: Domain %q and APIPrefix %q are both set: a domain is the API prefix $JS.<domain>.API, set one", opts.Domain, opts.APIPrefix)
	case opts.Domain != "":
		js, err = jetstream.NewWithDomain(nc, opts.Domain)
	case opts.APIPrefix != "":
		js, err = jetstream.NewWithAPIPrefix(nc, opts.APIPrefix)
	default:
		js, err = jetstream.New(nc)
	}
	if err != nil {
		return nil, fmt.Errorf("kv: jetstream: %w", err)
	}
	s := &Store{nc: nc, js: js, opts: opts}
	storage := jetstream.FileStorage
	if opts.Memory {
		storage = jetstream.MemoryStorage
	}
	buckets := []struct {
		dst  **Bucket
		name string
		cfg  jetstream.KeyValueConfig
	}{
		{&s.Workers, "workers", jetstream.KeyValueConfig{Description: "coordinator: worker claims"}},
		{&s.Nodes, "nodes", jetstream.KeyValueConfig{Description: "coordinator: node membership"}},
		{&s.Jobs, "jobs", jetstream.KeyValueConfig{Description: "coordinator: cron tick claims and runs", TTL: opts.JobRetention}},
		{&s.State, "state", jetstream.KeyValueConfig{Description: "coordinator: worker state checkpoints", MaxValueSize: MaxStateRecord}},
	}
	// The state bucket first: a workers bucket that has to be created anew starts its
	// revisions, the fencing tokens, above every token the checkpoints remember.
	buckets[0], buckets[3] = buckets[3], buckets[0]
	for _, b := range buckets {
		cfg := b.cfg
		cfg.Bucket = opts.Namespace + "_" + b.name
		cfg.History = 1
		cfg.Replicas = opts.Replicas
		cfg.Storage = storage
		cfg.LimitMarkerTTL = markerTTL
		var floor func() uint64
		if b.name == "workers" {
			s.workersCfg = cfg
			floor = func() uint64 { return s.stateFloor(ctx) }
		}
		kv, err := bindOrCreate(ctx, js, cfg, opts.BindOnly, floor)
		if err != nil {
			return nil, err
		}
		*b.dst = &Bucket{kv: kv, js: js, nc: nc, name: cfg.Bucket, keyPrefix: keyPrefix(js, cfg.Bucket)}
	}
	if err := s.ensureEvents(ctx, storage); err != nil {
		return nil, err
	}
	return s, nil
}

func bindOrCreate(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, bindOnly bool, floor func() uint64) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		if !bindOnly {
			if err := ensureReplicas(ctx, js, "KV_"+cfg.Bucket, cfg.Replicas); err != nil {
				return nil, err
			}
		}
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, translate("bind bucket", cfg.Bucket, err)
	}
	if bindOnly {
		return nil, fmt.Errorf("%w: %q does not exist: no coordinator has run in this namespace on this NATS yet", ErrBucketNotFound, cfg.Bucket)
	}
	if floor != nil {
		if f := floor(); f > 0 {
			return createAbove(ctx, js, cfg, f)
		}
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another node created it between our two calls.
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, translate("create bucket", cfg.Bucket, err)
	}
	return kv, nil
}

// createAbove creates a KV bucket whose first revision is floor+1: the stream that nats.go's
// CreateKeyValue would make, with FirstSeq set, which KeyValueConfig cannot say.
func createAbove(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, floor uint64) (jetstream.KeyValue, error) {
	maxSize := int32(-1)
	if cfg.MaxValueSize > 0 {
		maxSize = cfg.MaxValueSize
	}
	dup := 2 * time.Minute
	if cfg.TTL > 0 && cfg.TTL < dup {
		dup = cfg.TTL
	}
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:                   "KV_" + cfg.Bucket,
		Description:            cfg.Description,
		Subjects:               []string{"$KV." + cfg.Bucket + ".>"},
		MaxMsgsPerSubject:      int64(max(cfg.History, 1)),
		MaxBytes:               -1,
		MaxAge:                 cfg.TTL,
		MaxMsgSize:             maxSize,
		Storage:                cfg.Storage,
		Replicas:               max(cfg.Replicas, 1),
		AllowRollup:            true,
		DenyDelete:             true,
		Duplicates:             dup,
		MaxMsgs:                -1,
		MaxConsumers:           -1,
		AllowDirect:            true,
		Discard:                jetstream.DiscardNew,
		AllowMsgTTL:            cfg.LimitMarkerTTL > 0,
		SubjectDeleteMarkerTTL: cfg.LimitMarkerTTL,
		FirstSeq:               floor + 1,
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, translate("create bucket", cfg.Bucket, err)
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err != nil {
		return nil, translate("bind bucket", cfg.Bucket, err)
	}
	return kv, nil
}

// stateFloor is the highest fencing token the state checkpoints remember; 0 if none or
// unreadable (the state bucket is opened before the workers bucket).
func (s *Store) stateFloor(ctx context.Context) uint64 {
	if s.State == nil {
		return 0
	}
	keys, err := s.State.Keys(ctx)
	if err != nil {
		return 0
	}
	var top uint64
	for _, k := range keys {
		if r, _, err := s.State.GetState(ctx, k); err == nil {
			top = max(top, r.Token)
		}
	}
	return top
}

// EnsureWorkers recreates the workers bucket if it is gone (deleted by hand, or an external
// NATS that restarted with an empty store), with its revisions starting above floor and
// above every token the state checkpoints remember, so that fencing tokens never go
// backwards. It returns the first revision of a bucket it created, 0 if the bucket was
// there. It returns ErrUnavailable when JetStream did not answer.
//
// created is when the bucket's stream was created: a change tells that someone else
// deleted and recreated it in between.
func (s *Store) EnsureWorkers(ctx context.Context, floor uint64) (first uint64, created time.Time, err error) {
	if st, err := s.js.Stream(ctx, "KV_"+s.Workers.name); err == nil {
		return 0, st.CachedInfo().Created, nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, time.Time{}, translate("bind bucket", s.Workers.name, err)
	}
	floor = max(floor, s.stateFloor(ctx))
	if _, err := createAbove(ctx, s.js, s.workersCfg, floor); err != nil {
		return 0, time.Time{}, err
	}
	return floor + 1, time.Time{}, nil
}

// EnsureEvents recreates the events stream if it is gone.
func (s *Store) EnsureEvents(ctx context.Context) error {
	storage := jetstream.FileStorage
	if s.opts.Memory {
		storage = jetstream.MemoryStorage
	}
	return s.ensureEvents(ctx, storage)
}

// EventsStream is the name of the stream that keeps a namespace's events.
func EventsStream(ns string) string { return strings.ToUpper(ns) + "_EVENTS" }

// EventsSubject is the subject prefix of a namespace's events.
func EventsSubject(ns string) string { return ns + ".events" }

// ensureReplicas raises a stream's replica count to want (never lowers it): a namespace
// created while the cluster was smaller, or by an older version, gets the redundancy the
// cluster can now give.
func ensureReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return translate("bind stream", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return translate("stream info", stream, err)
	}
	if info.Config.Replicas >= want {
		return nil
	}
	cfg := info.Config
	cfg.Replicas = want
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return translate("raise replicas of", stream, err)
	}
	return nil
}

func (s *Store) ensureEvents(ctx context.Context, storage jetstream.StorageType) error {
	name := EventsStream(s.opts.Namespace)
	if _, err := s.js.Stream(ctx, name); err == nil {
		if s.opts.BindOnly {
			return nil
		}
		return ensureReplicas(ctx, s.js, name, s.opts.Replicas)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return translate("bind stream", name, err)
	} else if s.opts.BindOnly {
		return fmt.Errorf("%w: stream %q does not exist: no coordinator has run in this namespace on this NATS yet", ErrBucketNotFound, name)
	}
	_, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "coordinator: lifecycle events",
		Subjects:    []string{EventsSubject(s.opts.Namespace) + ".>"},
		MaxAge:      s.opts.EventRetention,
		Storage:     storage,
		Replicas:    s.opts.Replicas,
		Duplicates:  time.Minute,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return translate("create stream", name, err)
	}
	return nil
}

// Namespace returns the namespace the store was opened with.
func (s *Store) Namespace() string { return s.opts.Namespace }

// Conn returns the NATS connection the store uses.
func (s *Store) Conn() *nats.Conn { return s.nc }

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// ValidNamespace checks a namespace: it becomes part of bucket and stream names and a subject
// token, so it allows [A-Za-z0-9_-], 1–32 characters.
func ValidNamespace(ns string) error {
	if ns == "" || len(ns) > 32 {
		return fmt.Errorf("%w: namespace %q must be 1–32 characters", ErrInvalidName, ns)
	}
	if strings.Contains(ns, ".") {
		return fmt.Errorf("%w: invalid namespace %q: '.' is not allowed (use letters, digits, '-' and '_')", ErrInvalidName, ns)
	}
	if err := ValidName("namespace", ns); err != nil {
		return err
	}
	return nil
}
