package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the file at path and returns defaults < COORD_* environment < file, with
// defaults set (see the package doc). Problems come back together as one *Error, with
// file:line positions; the File is returned with it when the YAML could be read at all, so
// a caller that applies flags may fix it and call Validate again. An unreadable file gives
// the os error, wrapped.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	return parse(path, data, os.Getenv)
}

// Parse is Load for a file already read; name is used in messages.
func Parse(name string, data []byte) (File, error) {
	return parse(name, data, os.Getenv)
}

func parse(name string, data []byte, getenv func(string) string) (File, error) {
	f := Default()
	var problems []Problem
	if err := f.ApplyEnv(getenv); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return File{}, err
		}
		problems = append(problems, e.Problems...)
	}

	root, p := readNode(name, data)
	if p != nil {
		return File{}, &Error{Problems: append(problems, *p)}
	}
	src := newSource(name, root)

	// The node was read fine, so the decoder only reports type problems, all at once.
	var file File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&file)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case errors.As(err, &te):
		for _, msg := range te.Errors {
			if !src.extension(msg) {
				problems = append(problems, src.rewrite(msg))
			}
		}
	default:
		problems = append(problems, Problem{File: name, Msg: err.Error()})
	}

	overlay(reflect.ValueOf(&f).Elem(), reflect.ValueOf(file))
	f.SetDefaults()
	f.src = src
	if err := f.Validate(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			problems = append(problems, e.Problems...)
		}
	}
	if len(problems) > 0 {
		return f, &Error{Problems: sortProblems(problems)}
	}
	return f, nil
}

// readNode parses the YAML syntax. A second document is refused rather than ignored.
func readNode(name string, data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, syntaxProblem(name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(name, err)
	default:
		return nil, &Problem{File: name, Line: next.Line, Msg: "a second YAML document starts here; only one is read — remove the '---' line and what follows, or merge it into the first"}
	}
	return &root, nil
}

var reYAMLLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxProblem(name string, err error) *Problem {
	p := &Problem{File: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := reYAMLLine.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = m[2]
	}
	fix := "check the indentation and quoting on this line and the one above"
	if strings.Contains(p.Msg, "tab") || strings.Contains(p.Msg, "cannot start any token") {
		fix = "YAML does not allow tabs for indentation: use spaces"
	}
	p.Msg = "YAML syntax error: " + p.Msg + " — " + fix
	return p
}

// sortProblems orders by line, keeping the order of problems on the same line; problems
// without a line (environment) come first. A problem reported twice (a value used through
// an alias) is kept once.
func sortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	seen := map[Problem]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// The messages of *yaml.TypeError, and of our own unmarshalers (nodeError).
var (
	reOwn      = regexp.MustCompile(`^line (\d+): column (\d+): (.*)$`)
	reUnknown  = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	reTwice    = regexp.MustCompile(`^line (\d+): field (.+) already set in type (\S+)$`)
	reTwiceMap = regexp.MustCompile(`^line (\d+): mapping key (.+) already defined at line (\d+)$`)
	reCannot   = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
	reLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// extension reports whether msg is about a top-level key starting with "x-": as in Compose
// files, such keys are ignored, so that they can hold YAML anchors for workers and jobs.
func (s *source) extension(msg string) bool {
	m := reUnknown.FindStringSubmatch(msg)
	return m != nil && m[3] == "config.File" && strings.HasPrefix(m[2], "x-")
}

// rewrite turns one decoder message into a Problem that names the key and the fix, and
// marks the path as bad so that Validate does not report it a second time.
func (s *source) rewrite(msg string) Problem {
	atoi := func(v string) int { n, _ := strconv.Atoi(v); return n }
	if m := reOwn.FindStringSubmatch(msg); m != nil {
		line, col := atoi(m[1]), atoi(m[2])
		if e, ok := s.find(func(e entry) bool { return e.val.Line == line && e.val.Column == col }); ok {
			if e.key == nil {
				s.bad[e.parent] = true // a bad list item leaves the whole list undecoded
			}
			return s.problem(e.path, line, s.subject(e.path)+": "+m[3])
		}
		return Problem{File: s.name, Line: line, Msg: m[3]}
	}
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		line, key := atoi(m[1]), m[2]
		e, ok := s.find(func(e entry) bool { return e.key != nil && e.key.Line == line && e.key.Value == key })
		if !ok {
			return Problem{File: s.name, Line: line, Msg: unknownKey(key, "", m[3])}
		}
		return s.problem(e.path, line, unknownKey(key, s.where(e.parent), m[3]))
	}
	if m := reTwice.FindStringSubmatch(msg); m != nil {
		line, key := atoi(m[1]), m[2]
		if e, ok := s.find(func(e entry) bool { return e.key != nil && e.key.Line == line && e.key.Value == key }); ok {
			return s.problem(e.path, line, fmt.Sprintf("key %q is set twice %s (first at line %d) — remove one", key, s.where(e.parent), s.line(e.path)))
		}
		return Problem{File: s.name, Line: line, Msg: fmt.Sprintf("key %q is set twice — remove one", key)}
	}
	if m := reTwiceMap.FindStringSubmatch(msg); m != nil {
		line, first := atoi(m[1]), atoi(m[3])
		key, err := strconv.Unquote(m[2])
		if err != nil {
			key = m[2]
		}
		if e, ok := s.find(func(e entry) bool { return e.key != nil && e.key.Line == line && e.key.Value == key }); ok {
			return s.problem(e.path, line, fmt.Sprintf("key %q is set twice %s (first at line %d) — remove one", key, s.where(e.parent), first))
		}
		return Problem{File: s.name, Line: line, Msg: fmt.Sprintf("key %q is set twice (first at line %d) — remove one", key, first)}
	}
	if m := reCannot.FindStringSubmatch(msg); m != nil {
		line, tag, value, into := atoi(m[1]), m[2], m[3], m[4]
		e, ok := s.find(func(e entry) bool { return e.val.Line == line && matchesTag(e.val, tag, value) })
		if !ok {
			return Problem{File: s.name, Line: line, Msg: fmt.Sprintf("expected %s", describeType(into))}
		}
		text := fmt.Sprintf("%s: expected %s, got %s", s.subject(e.path), describeType(into), describeKind(e.val))
		if e.path == "" {
			text = fmt.Sprintf("the file must be %s, got %s", describeType(into), describeKind(e.val))
		}
		switch _, section := sections[into]; {
		case example(e.path) != "":
			text += " — e.g. " + example(e.path)
		case into == "config.File":
			text += " — start with keys like \"node:\" or \"workers:\" at the left margin"
		case section:
			text += " — write its keys on the lines below it, indented"
		}
		return s.problem(e.path, line, text)
	}
	if m := reLine.FindStringSubmatch(msg); m != nil {
		return Problem{File: s.name, Line: atoi(m[1]), Msg: m[2]}
	}
	return Problem{File: s.name, Msg: msg}
}

// find returns the last entry that matches: the innermost one where several start at the
// same place.
func (s *source) find(match func(entry) bool) (entry, bool) {
	for i := len(s.entries) - 1; i >= 0; i-- {
		if match(s.entries[i]) {
			return s.entries[i], true
		}
	}
	return entry{}, false
}

func (s *source) problem(path string, line int, msg string) Problem {
	s.bad[path] = true
	return Problem{File: s.name, Line: line, Msg: msg}
}

// where says where a key is, for "unknown key "x" in …".
func (s *source) where(parent string) string {
	if parent == "" {
		return "at the top level"
	}
	return "in " + s.subject(parent)
}

func matchesTag(n *yaml.Node, tag, value string) bool {
	switch tag {
	case "!!seq":
		return n.Kind == yaml.SequenceNode
	case "!!map":
		return n.Kind == yaml.MappingNode
	}
	if n.Kind != yaml.ScalarNode {
		return false
	}
	if v, ok := strings.CutSuffix(value, "..."); ok {
		return strings.HasPrefix(n.Value, v)
	}
	return n.Value == value
}

// The sections of a File, by the type name the decoder prints.
var sections = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, v := range []any{File{}, Node{}, Cluster{}, Server{}, ServerTLS{}, NATS{}, TLS{}, Timing{}, Log{}, Worker{}, Job{}} {
		t := reflect.TypeOf(v)
		m[t.String()] = t
	}
	return m
}()

// sectionPlace says where a section's keys go, for "ttl belongs under timing:".
var sectionPlace = map[string]string{
	"config.File":      "the top level",
	"config.Node":      "node:",
	"config.Cluster":   "cluster:",
	"config.Server":    "server:",
	"config.ServerTLS": "server.tls:",
	"config.NATS":      "nats:",
	"config.TLS":       "nats.tls:",
	"config.Timing":    "timing:",
	"config.Log":       "log:",
	"config.Worker":    "a workers: entry",
	"config.Job":       "a jobs: entry",
}

// yamlKeys lists the keys of a section in declaration order.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// unknownKey explains an unknown key: a near miss, a key that belongs in another section,
// and the keys that are valid here.
func unknownKey(key, where, typeName string) string {
	msg := fmt.Sprintf("unknown key %q", key)
	if where != "" {
		msg += " " + where
	}
	t, ok := sections[typeName]
	if !ok {
		return msg + " — remove it"
	}
	keys := yamlKeys(t)
	if near := nearest(key, keys); near != "" {
		return fmt.Sprintf("%s — did you mean %s? (valid keys: %s)", msg, near, strings.Join(keys, ", "))
	}
	var elsewhere []string
	for _, name := range []string{"config.File", "config.Node", "config.Cluster", "config.Server", "config.ServerTLS", "config.NATS", "config.TLS", "config.Timing", "config.Log", "config.Worker", "config.Job"} {
		if name == typeName {
			continue
		}
		for _, k := range yamlKeys(sections[name]) {
			if k == key {
				elsewhere = append(elsewhere, sectionPlace[name])
			}
		}
	}
	if len(elsewhere) > 0 {
		return fmt.Sprintf("%s — %s belongs in %s (valid keys here: %s)", msg, key, strings.Join(elsewhere, " or "), strings.Join(keys, ", "))
	}
	return fmt.Sprintf("%s — valid keys: %s", msg, strings.Join(keys, ", "))
}

// nearest is the key that key was probably meant to be: the same but for case, '-' or
// '_', or at most two edits away.
func nearest(key string, keys []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	for _, k := range keys {
		if norm(k) == norm(key) {
			return k
		}
	}
	if len(key) < 4 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range keys {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describeType says in words what the decoder wanted.
func describeType(goType string) string {
	switch goType {
	case "int", "int64", "uint", "uint64":
		return "a whole number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "[]string":
		return "a list of strings"
	case "map[string]string":
		return "a mapping of NAME: value pairs"
	case "config.Restart":
		return "one of always, on-failure, never"
	case "config.Overlap":
		return "one of skip, allow, replace"
	case "config.CatchUp":
		return "one of none, last, all"
	case "[]config.Worker":
		return "a list of workers, each starting with \"- name:\""
	case "[]config.Job":
		return "a list of jobs, each starting with \"- name:\""
	case "config.File":
		return "a mapping of sections (node:, cluster:, workers: …)"
	}
	if _, ok := sections[goType]; ok {
		return "a mapping of key: value lines"
	}
	return goType
}

var reIndex = regexp.MustCompile(`\[\d+\]`)

// example shows a key written correctly, where a short example helps.
func example(path string) string {
	key := reIndex.ReplaceAllString(path, "") // cluster.peers[1] → cluster.peers
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		key = key[i+1:]
	}
	return map[string]string{
		"weight":         "weight: 2",
		"size":           "size: 3",
		"catch_up_limit": "catch_up_limit: 10",
		"retry_lost":     "retry_lost: true",
		"peers":          `peers: ["10.0.0.2:6222", "10.0.0.3:6222"]`,
		"env":            "env: {KEY: value}",
		"restart":        "restart: on-failure",
		"overlap":        "overlap: skip",
		"catch_up":       "catch_up: last",
		"workers":        `workers: [{name: billing, command: ["/usr/bin/billing"]}]`,
		"jobs":           `jobs: [{name: report, schedule: "0 * * * *", command: ["/usr/bin/report"]}]`,
	}[key]
}
