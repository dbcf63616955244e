package ownership_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

// runReadmeExample is the README's Go library snippet ("## The Go library"), verbatim
// between the markers: TestReadmeSnippet fails when the two differ, and the compiler checks
// the snippet.
func runReadmeExample(ctx context.Context) error {
	// README:begin
	nc, err := nats.Connect(nats.DefaultURL) // a node's embedded server, or your NATS
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := kv.Open(ctx, nc, kv.Options{}) // buckets in namespace "coord"
	if err != nil {
		return err
	}
	engine, err := ownership.New(store, "node-a", ownership.DefaultConfig())
	if err != nil {
		return err
	}
	err = engine.Register("billing", func(ctx context.Context, lease *ownership.Lease) error {
		// Runs on exactly one node. ctx ends when the lease does: return promptly.
		return runBilling(ctx, lease.Token())
	})
	if err != nil {
		return err
	}
	if err := engine.Start(ctx); err != nil {
		return err
	}
	defer engine.Close() // stops workers, releases claims: the next node starts at once
	// README:end
	<-ctx.Done()
	return nil
}

func runBilling(ctx context.Context, token uint64) error { <-ctx.Done(); return nil }

// The README's library snippet, compiled (not run: it needs a NATS server on
// nats.DefaultURL).
func Example_readme() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = runReadmeExample(ctx)
}

// The README's Go snippet is the code of runReadmeExample, line for line.
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "## The Go library")
	if !ok {
		t.Fatal(`README.md has no "## The Go library" section`)
	}
	_, after, ok = strings.Cut(after, "```go\n")
	if !ok {
		t.Fatal("the Go library section has no ```go block")
	}
	snippet, _, _ := strings.Cut(after, "```")

	src, err := os.ReadFile("readme_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "\t// README:begin\n")
	body, _, _ = strings.Cut(body, "\t// README:end\n")
	var lines []string
	for _, l := range strings.SplitAfter(body, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	if want := strings.Join(lines, ""); snippet != want {
		t.Errorf("README.md's Go snippet differs from runReadmeExample in ownership/readme_example_test.go: copy one to the other.\nREADME:\n%s\nexample:\n%s", snippet, want)
	}
}
