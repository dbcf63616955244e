package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// LastLogError returns the error (the err attribute, else the message) of the last ERROR
// record in a node's JSON log, or "".
func LastLogError(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["level"] != "ERROR" {
			continue
		}
		last = fmt.Sprint(rec["msg"])
		if e, ok := rec["err"]; ok {
			last = fmt.Sprint(e)
		}
	}
	return last
}
