package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// completionCmd prints a completion script for bash, zsh or fish, built from the commands
// and their flags as -h prints them, so that it cannot drift from the binary.
func completionCmd(args []string, stdout, stderr io.Writer) int {
	c := newCmd("completion", "bash|zsh|fish", "Print a shell completion script. Install it with e.g.\n"+
		"  bash: source <(coordinator completion bash)\n"+
		"  zsh:  coordinator completion zsh > \"${fpath[1]}/_coordinator\"\n"+
		"  fish: coordinator completion fish > ~/.config/fish/completions/coordinator.fish", stdout, stderr)
	pos, code := c.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return c.usageError("a shell is required: bash, zsh or fish")
	}
	cmds := completionData()
	switch pos[0] {
	case "bash":
		writeBash(stdout, cmds)
	case "zsh":
		writeZsh(stdout, cmds)
	case "fish":
		writeFish(stdout, cmds)
	default:
		return c.usageError(fmt.Sprintf("unknown shell %q: use bash, zsh or fish", pos[0]))
	}
	return 0
}

type completionCommand struct {
	name, usage string
	flags       []completionFlag
}

type completionFlag struct{ name, usage string }

var flagLine = regexp.MustCompile(`^  -(\S+)`)

// completionData collects each command's flags from its -h output.
func completionData() []completionCommand {
	var out []completionCommand
	for _, c := range commands() {
		cc := completionCommand{name: c.name, usage: c.usage}
		if c.name != "completion" {
			var help bytes.Buffer
			c.run([]string{"-h"}, &help, io.Discard)
			lines := strings.Split(help.String(), "\n")
			for i, l := range lines {
				m := flagLine.FindStringSubmatch(l)
				if m == nil {
					continue
				}
				u := ""
				if i+1 < len(lines) {
					u = strings.TrimSpace(lines[i+1])
				}
				cc.flags = append(cc.flags, completionFlag{name: m[1], usage: u})
			}
			sort.Slice(cc.flags, func(i, j int) bool { return cc.flags[i].name < cc.flags[j].name })
		}
		out = append(out, cc)
	}
	return out
}

func writeBash(w io.Writer, cmds []completionCommand) {
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	fmt.Fprintln(w, "# bash completion for coordinator: source <(coordinator completion bash)")
	fmt.Fprintln(w, "_coordinator() {")
	fmt.Fprintln(w, `  local cur="${COMP_WORDS[COMP_CWORD]}"`)
	fmt.Fprintln(w, `  if [[ $COMP_CWORD -eq 1 ]]; then`)
	fmt.Fprintf(w, "    COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(names, " ")+" --help --version")
	fmt.Fprintln(w, "    return")
	fmt.Fprintln(w, "  fi")
	fmt.Fprintln(w, `  local flags=""`)
	fmt.Fprintln(w, `  case "${COMP_WORDS[1]}" in`)
	for _, c := range cmds {
		var fl []string
		for _, f := range c.flags {
			fl = append(fl, "--"+f.name)
		}
		fmt.Fprintf(w, "    %s) flags=%q ;;\n", c.name, strings.Join(append(fl, "--help"), " "))
	}
	fmt.Fprintln(w, "  esac")
	fmt.Fprintln(w, `  if [[ "${COMP_WORDS[1]}" == completion ]]; then flags="bash zsh fish"; fi`)
	fmt.Fprintln(w, `  COMPREPLY=($(compgen -W "$flags" -- "$cur"))`)
	fmt.Fprintln(w, "}")
	fmt.Fprintln(w, "complete -o default -F _coordinator coordinator")
}

func zshQuote(s string) string {
	s = strings.ReplaceAll(s, "'", "'\\''")
	s = strings.ReplaceAll(s, "[", "\\[")
	s = strings.ReplaceAll(s, "]", "\\]")
	s = strings.ReplaceAll(s, ":", "\\:")
	return s
}

func writeZsh(w io.Writer, cmds []completionCommand) {
	fmt.Fprintln(w, "#compdef coordinator")
	fmt.Fprintln(w, "# zsh completion for coordinator: coordinator completion zsh > \"${fpath[1]}/_coordinator\"")
	fmt.Fprintln(w, "_coordinator() {")
	fmt.Fprintln(w, "  local -a cmds")
	fmt.Fprintln(w, "  cmds=(")
	for _, c := range cmds {
		fmt.Fprintf(w, "    '%s:%s'\n", c.name, zshQuote(c.usage))
	}
	fmt.Fprintln(w, "  )")
	fmt.Fprintln(w, "  if (( CURRENT == 2 )); then")
	fmt.Fprintln(w, "    _describe 'command' cmds")
	fmt.Fprintln(w, "    return")
	fmt.Fprintln(w, "  fi")
	fmt.Fprintln(w, "  case ${words[2]} in")
	for _, c := range cmds {
		fmt.Fprintf(w, "    %s)\n      _arguments", c.name)
		for _, f := range c.flags {
			fmt.Fprintf(w, " \\\n        '--%s[%s]'", f.name, zshQuote(f.usage))
		}
		if c.name == "completion" {
			fmt.Fprint(w, " \\\n        '1:shell:(bash zsh fish)'")
		} else {
			fmt.Fprint(w, " \\\n        '*:argument:_files'")
		}
		fmt.Fprintln(w, " ;;")
	}
	fmt.Fprintln(w, "  esac")
	fmt.Fprintln(w, "}")
	fmt.Fprintln(w, `_coordinator "$@"`)
}

func writeFish(w io.Writer, cmds []completionCommand) {
	fmt.Fprintln(w, "# fish completion for coordinator: coordinator completion fish > ~/.config/fish/completions/coordinator.fish")
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	fmt.Fprintln(w, "complete -c coordinator -f")
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c coordinator -n 'not __fish_seen_subcommand_from %s' -a %s -d '%s'\n",
			strings.Join(names, " "), c.name, strings.ReplaceAll(c.usage, "'", "\\'"))
		for _, f := range c.flags {
			fmt.Fprintf(w, "complete -c coordinator -n '__fish_seen_subcommand_from %s' -l %s -d '%s'\n",
				c.name, f.name, strings.ReplaceAll(f.usage, "'", "\\'"))
		}
	}
	fmt.Fprintln(w, "complete -c coordinator -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'")
}
