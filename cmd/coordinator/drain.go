package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// drainMarkerFile, in the node's data directory, says that the node was drained: it
// restarts drained, until `coordinator drain --undo`. The drain itself lives in the node's
// membership record, which goes when the node stops.
const drainMarkerFile = "coordinator-drained"

func (d *daemon) drainMarkerPath() string { return filepath.Join(d.cfg.Node.Data, drainMarkerFile) }

// persistDrain writes or removes the drain marker.
func (d *daemon) persistDrain(on bool) error {
	path := d.drainMarkerPath()
	if !on {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the drain marker %s: %w", path, err)
		}
		return nil
	}
	if err := os.MkdirAll(d.cfg.Node.Data, 0o755); err != nil {
		return fmt.Errorf("writing the drain marker: %w", err)
	}
	body := fmt.Sprintf("drained at %s; `coordinator drain --undo %s` lets the node claim again\n",
		time.Now().UTC().Format(time.RFC3339), d.cfg.Node.Name)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("writing the drain marker: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the drain marker: %w", err)
	}
	return nil
}

// drainedBefore reports whether the node was drained when it last ran, and since when.
func (d *daemon) drainedBefore() (bool, string) {
	b, err := os.ReadFile(d.drainMarkerPath())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("cannot read the drain marker; starting undrained", "path", d.drainMarkerPath(), "err", err)
		}
		return false, ""
	}
	return true, strings.TrimSpace(string(b))
}
