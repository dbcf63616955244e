package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Binaries are the programs a Cluster runs.
type Binaries struct {
	// Coordinator is cmd/coordinator.
	Coordinator string
	// Recorder is internal/cluster/recorder, the supervised command of test workers.
	Recorder string
	// Reaper is internal/cluster/reaper, the parent of each coordinator process.
	Reaper string
}

const module = "github.com/jetcoord/coordinator"

var build struct {
	once sync.Once
	bins Binaries
	err  error
}

// Build compiles the coordinator, the recorder and the reaper into dir (CGO_ENABLED=0),
// once per process: later calls return the first call's result, whatever their dir. Run it
// from inside the module (tests run in their package directory). dir must exist and should
// outlive every Cluster; "" makes a new temporary directory that the caller may remove
// (filepath.Dir of any of the paths) when done. TestMain is the place:
//
//	dir, _ := os.MkdirTemp("", "coordinator-bin")
//	bins, err := cluster.Build(dir)
//	code := m.Run()
//	os.RemoveAll(dir)
func Build(dir string) (Binaries, error) {
	build.once.Do(func() { build.bins, build.err = buildAll(dir) })
	return build.bins, build.err
}

func buildAll(dir string) (Binaries, error) {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "coordinator-cluster-bin-"); err != nil {
			return Binaries{}, fmt.Errorf("cluster: %w", err)
		}
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	root, err := moduleRoot(goTool)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{
		Coordinator: filepath.Join(dir, "coordinator"),
		Recorder:    filepath.Join(dir, "recorder"),
		Reaper:      filepath.Join(dir, "reaper"),
	}
	for _, p := range []struct{ out, pkg string }{
		{b.Coordinator, module + "/cmd/coordinator"},
		{b.Recorder, module + "/internal/cluster/recorder"},
		{b.Reaper, module + "/internal/cluster/reaper"},
	} {
		cmd := exec.Command(goTool, "build", "-o", p.out, p.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("cluster: go build %s: %w\n%s", p.pkg, err, out)
		}
	}
	return b, nil
}

// moduleRoot finds the directory of this module's go.mod from the working directory.
func moduleRoot(goTool string) (string, error) {
	cmd := exec.Command(goTool, "env", "GOMOD")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("cluster: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(out.String())
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("cluster: not inside the %s module (run from its tree, or pass Options.Binaries)", module)
	}
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	if !bytes.Contains(data, []byte("module "+module)) {
		return "", fmt.Errorf("cluster: %s is not the %s module (run from its tree, or pass Options.Binaries)", gomod, module)
	}
	return filepath.Dir(gomod), nil
}
