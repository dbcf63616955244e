package config

import "go.yaml.in/yaml/v3"

// Shell runs a command written as a single string.
const Shell = "/bin/sh"

// Command is the argv of a supervised program. In YAML it is either a list, run as is
// (["/usr/bin/billing", "--flag"]), or a string, run as ["/bin/sh", "-c", string] so that
// pipes, quoting and $VARS work.
type Command []string

// UnmarshalYAML accepts a list of strings or one string; problems are returned as a
// *yaml.TypeError so that the decoder goes on and reports the rest of the file too.
func (c *Command) UnmarshalYAML(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		*c = nil
	case n.Kind == yaml.ScalarNode:
		if n.Value == "" {
			*c = nil
			return nil
		}
		*c = Command{Shell, "-c", n.Value}
	case n.Kind == yaml.SequenceNode:
		argv := make(Command, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind == yaml.AliasNode && item.Alias != nil {
				item = item.Alias
			}
			if item.Kind != yaml.ScalarNode {
				return nodeError(item, "expected a string in the argument list, got %s — quote each argument: [\"/path/to/program\", \"--flag\"]", describeKind(item))
			}
			argv = append(argv, item.Value)
		}
		*c = argv
	default:
		return nodeError(n, "expected a list of arguments or a shell command string, got %s — write command: [\"/path/to/program\", \"arg\"] or command: \"echo hi\"", describeKind(n))
	}
	return nil
}
