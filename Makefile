# coordinator — see README.md.
GO      ?= go
BIN     := bin/coordinator
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.Version=$(VERSION)

.PHONY: run build test lint bench chaos chaos-short cluster secure-cluster fuzz-short image clean

# Run the demo on one embedded node (data in ./data, clients on 127.0.0.1:4222).
run: build
	./$(BIN) run --config deploy/demo.yaml

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/coordinator

# The default test run: vet, formatting, and every package's tests with the race detector,
# including the multi-process integration tests (Docker tests skip when no engine answers).
test: lint
	$(GO) test -race -count=1 -timeout 14m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks: figures as "name value unit" lines and bench/results.json.
bench: build
	$(GO) run ./bench -bin $(BIN) -out bench

# The chaos suite: three nodes, seeded process, network and operator faults, a checker.
# CHAOS_FLAGS='-seed 42 -duration 10m'; '-ops=false' leaves the operator faults out,
# '-kinds kv-del,reload' keeps only those kinds.
chaos: build
	$(GO) run ./chaos -bin $(BIN) $(CHAOS_FLAGS)

# CI's run (one minute of faults, about two in all). CHAOS_SHORT_OPS=false runs it without operator faults.
CHAOS_SHORT_OPS ?= true
chaos-short: build
	$(GO) run ./chaos -bin $(BIN) -duration 60s -ops=$(CHAOS_SHORT_OPS) $(CHAOS_FLAGS)

# Three nodes on this machine in one terminal (Ctrl-C stops them all).
cluster: build
	./deploy/local-cluster.sh ./$(BIN)

# The same three nodes with TLS (mutual on routes) and a password; certificates and the
# password are made in ./data/secure on first run. It prints how to inspect with `nats`.
secure-cluster: build
	./deploy/secure-cluster.sh ./$(BIN)

# Each fuzz target briefly (FUZZTIME each, default 5s); the seed corpora are in testdata/fuzz.
FUZZTIME ?= 5s
fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeClaim$$' -fuzztime $(FUZZTIME) ./kv
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeNode$$' -fuzztime $(FUZZTIME) ./kv
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRun$$' -fuzztime $(FUZZTIME) ./scheduler
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeLease$$' -fuzztime $(FUZZTIME) ./scheduler
	$(GO) test -run '^$$' -fuzz '^FuzzParseSchedule$$' -fuzztime $(FUZZTIME) ./scheduler
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/config

# The FROM-scratch image used by deploy/compose.yaml.
image:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o deploy/coordinator ./cmd/coordinator
	CGO_ENABLED=0 $(GO) build -ldflags '-s -w' -o deploy/hello/hello ./deploy/hello
	docker build -t coordinator:dev -f deploy/Dockerfile deploy

clean:
	rm -rf bin data deploy/coordinator deploy/hello/hello
