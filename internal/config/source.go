package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// source indexes a parsed YAML document by path ("timing.ttl", "workers[1].command[0]",
// "workers[1].env.KEY"), so that problems found after decoding can be given a line.
type source struct {
	name    string
	entries []entry          // in document order, duplicates included
	byPath  map[string]entry // the first entry of each path
	bad     map[string]bool  // paths with a decode problem; Validate does not report them again
}

// entry is one value in the document: a mapping value (key set) or a list item (key nil).
type entry struct {
	path     string
	parent   string
	key, val *yaml.Node
}

func newSource(name string, root *yaml.Node) *source {
	s := &source{name: name, byPath: map[string]entry{}, bad: map[string]bool{}}
	if root != nil && root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root != nil && root.Kind != 0 {
		s.add(entry{path: "", val: root})
		s.walk("", root)
	}
	return s
}

func (s *source) add(e entry) {
	s.entries = append(s.entries, e)
	if _, ok := s.byPath[e.path]; !ok {
		s.byPath[e.path] = e
	}
}

func (s *source) walk(path string, n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // merge key: its values are indexed where the anchor is
				continue
			}
			child := k.Value
			if path != "" {
				child = path + "." + k.Value
			}
			s.add(entry{path: child, parent: path, key: k, val: v})
			s.walk(child, v)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			child := path + "[" + strconv.Itoa(i) + "]"
			s.add(entry{path: child, parent: path, val: item})
			s.walk(child, item)
		}
	}
}

// has reports whether the document sets path.
func (s *source) has(path string) bool {
	if s == nil {
		return false
	}
	_, ok := s.byPath[path]
	return ok
}

// line is where path is written, or else where its closest written ancestor is; 0 when
// neither is in the document.
func (s *source) line(path string) int {
	if s == nil {
		return 0
	}
	for {
		if e, ok := s.byPath[path]; ok && path != "" {
			if e.key != nil {
				return e.key.Line
			}
			return e.val.Line
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// isBad reports whether path or one of its ancestors already has a decode problem.
func (s *source) isBad(path string) bool {
	if s == nil {
		return false
	}
	for {
		if s.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// badUnder reports whether any path below prefix has a decode problem.
func (s *source) badUnder(prefix string) bool {
	if s == nil {
		return false
	}
	for p := range s.bad {
		if p == prefix || strings.HasPrefix(p, prefix+".") || strings.HasPrefix(p, prefix+"[") {
			return true
		}
	}
	return false
}

// scalar is the value written at path, if it is a scalar.
func (s *source) scalar(path string) string {
	if s == nil {
		return ""
	}
	if e, ok := s.byPath[path]; ok && e.val.Kind == yaml.ScalarNode {
		return e.val.Value
	}
	return ""
}

// parentPath drops the last element of a path built by walk: "a.b[2]" → "a.b" → "a" → "".
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// subject names path for a message: "timing.ttl", `workers[1] "billing": command`, or
// `workers[1] "billing"` for the item itself. name is the item's name, "" if unknown.
func subject(path, name string) string {
	for _, list := range []string{"workers[", "jobs["} {
		if !strings.HasPrefix(path, list) {
			continue
		}
		end := strings.IndexByte(path, ']')
		if end < 0 {
			break
		}
		item := path[:end+1]
		if name != "" {
			item += " " + strconv.Quote(name)
		}
		if rest := strings.TrimPrefix(path[end+1:], "."); rest != "" {
			return item + ": " + rest
		}
		return item
	}
	if path == "" {
		return "the top level"
	}
	return path
}

// itemPath is the "workers[1]" or "jobs[0]" that path lies in, or "".
func itemPath(path string) string {
	if !strings.HasPrefix(path, "workers[") && !strings.HasPrefix(path, "jobs[") {
		return ""
	}
	if end := strings.IndexByte(path, ']'); end >= 0 {
		return path[:end+1]
	}
	return ""
}

// nameOf is the name written in the worker or job that path lies in.
func (s *source) nameOf(path string) string {
	if item := itemPath(path); item != "" {
		return s.scalar(item + ".name")
	}
	return ""
}

// subject names path using the item names written in the document.
func (s *source) subject(path string) string {
	return subject(path, s.nameOf(path))
}
