// Package tzdata loads time zones from the IANA database embedded in the binary, never from
// the machine's, so that every node computes the same cron ticks.
//
// time.LoadLocation looks in $ZONEINFO and the system directories (/usr/share/zoneinfo …)
// before it falls back to the copy that the time/tzdata package embeds, so two nodes whose
// systems carry different tzdata releases (or none) could disagree on a zone's offsets and
// fire a tick an hour apart. Load reads zoneinfo.zip, the file Go's time/tzdata is built
// from, copied here from the toolchain (lib/time/zoneinfo.zip, IANA release 2025c): the
// same data on every node built from the same commit, whatever its Go toolchain or system.
// To update it, copy that file from a newer Go release and change Version.
package tzdata

import (
	"archive/zip"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"sync"
	"time"
)

// Version is the IANA tz database release of the embedded data.
const Version = "2025c"

//go:embed zoneinfo.zip
var zipData []byte

var (
	openOnce sync.Once
	files    map[string]*zip.File
	openErr  error

	mu    sync.Mutex
	cache = map[string]*time.Location{}
)

// Load returns the zone named name ("UTC", "Europe/Berlin") from the embedded database.
// "" and "UTC" are time.UTC; "Local" is refused, as the machine's zone may differ between
// nodes. An unknown name returns an error naming it.
func Load(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("tzdata: time zone Local is the machine's zone: name the zone, e.g. Europe/Berlin, or use UTC")
	}
	mu.Lock()
	defer mu.Unlock()
	if loc, ok := cache[name]; ok {
		return loc, nil
	}
	openOnce.Do(func() {
		r, err := zip.NewReader(bytes.NewReader(zipData), int64(len(zipData)))
		if err != nil {
			openErr = fmt.Errorf("tzdata: embedded zoneinfo.zip: %w", err)
			return
		}
		files = make(map[string]*zip.File, len(r.File))
		for _, f := range r.File {
			files[f.Name] = f
		}
	})
	if openErr != nil {
		return nil, openErr
	}
	f, ok := files[name]
	if !ok {
		return nil, fmt.Errorf("tzdata: unknown time zone %q (IANA release %s)", name, Version)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("tzdata: %q: %w", name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("tzdata: %q: %w", name, err)
	}
	loc, err := time.LoadLocationFromTZData(name, data)
	if err != nil {
		return nil, fmt.Errorf("tzdata: %q: %w", name, err)
	}
	cache[name] = loc
	return loc, nil
}
