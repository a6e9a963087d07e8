// Package yamlcheck decodes a YAML settings file (the network file, a
// transfer policy, a protocol) into its Go struct and reports every mistake
// at once, in the user's terms: an unknown key with the key it probably
// meant, a value of the wrong kind in words ("not a whole number", never a
// Go type name), each with its line and its setting path (list elements
// named by their id where they have one: sites[lakeshore].schedule).
package yamlcheck

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one mistake in a file.
type Problem struct {
	Line    int
	Setting string
	Message string
}

// Decode parses data into v (a pointer to a struct with yaml tags) and
// returns the document's root node and every problem found: syntax errors
// (then nothing is decoded), unknown keys, and values of the wrong kind.
// Values that did decode are kept, so the caller can validate the rest.
func Decode(data []byte, v any) (*yaml.Node, []Problem) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, []Problem{{Line: syntaxLine(err), Setting: "(file)", Message: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return root, nil
		}
		root = root.Content[0]
	}
	var ps []Problem
	unknownKeys(root, reflect.TypeOf(v), "", &ps)
	if err := root.Decode(v); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return root, append(ps, Problem{Setting: "(file)", Message: err.Error()})
		}
		for _, msg := range te.Errors {
			ps = append(ps, typeProblem(root, msg))
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return root, ps
}

// Errorf is what a custom UnmarshalYAML returns for a bad value: a
// *yaml.TypeError, so decoding goes on and every mistake is reported.
func Errorf(n *yaml.Node, format string, a ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, a...))}}
}

var unmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// unknownKeys walks the node tree alongside the struct type and reports
// keys the type does not have.
func unknownKeys(n *yaml.Node, t reflect.Type, path string, ps *[]Problem) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshaler) || t.Implements(unmarshaler) {
		return // decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a wrong kind: the decoder's type error says so
		}
		fields := fieldsOf(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*ps = append(*ps, Problem{Line: k.Line, Setting: join(path, k.Value), Message: unknownKeyMessage(k.Value, fields)})
				continue
			}
			unknownKeys(val, ft, join(path, k.Value), ps)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, el := range n.Content {
			unknownKeys(el, t.Elem(), path+"["+ElementName(el, i)+"]", ps)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			unknownKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), ps)
		}
	}
}

// ElementName names a list element by its id (or name) key, else by its
// position: a user thinks of "site lakeshore", not "sites[1]".
func ElementName(el *yaml.Node, i int) string {
	if el.Kind == yaml.MappingNode {
		for _, key := range []string{"id", "name"} {
			for j := 0; j+1 < len(el.Content); j += 2 {
				if el.Content[j].Value == key && el.Content[j+1].Kind == yaml.ScalarNode && el.Content[j+1].Value != "" {
					return el.Content[j+1].Value
				}
			}
		}
	}
	return strconv.Itoa(i)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldsOf maps a struct's yaml keys to their types (inline fields included).
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range fieldsOf(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// unknownKeyMessage suggests the closest known key, or lists them.
func unknownKeyMessage(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	best, dist := "", 1<<30
	for _, k := range names {
		if d := distance(strings.ToLower(key), k); d < dist {
			best, dist = k, d
		}
	}
	if best != "" && (dist <= 2 || (dist <= 4 && len(key) >= 8) || strings.HasPrefix(best, key) || strings.HasPrefix(key, best)) {
		return fmt.Sprintf("unknown key, did you mean %q?", best)
	}
	return "unknown key (known here: " + strings.Join(names, ", ") + ")"
}

// distance is the Levenshtein distance of two strings.
func distance(a, b string) int {
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

var (
	typeErrRE = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	lineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// typeProblem turns one of yaml.v3's type errors into the user's terms.
func typeProblem(root *yaml.Node, msg string) Problem {
	if m := typeErrRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if strings.HasSuffix(m[4], ".Secret") {
			// Never repeat what stands there: it may be the secret itself.
			return Problem{Line: line, Setting: SettingAt(root, line), Message: "a secret may not be written into the file: give " + kindWords(m[4])}
		}
		return Problem{Line: line, Setting: SettingAt(root, line), Message: fmt.Sprintf("%s is not %s", shown(m[2], m[3]), kindWords(m[4]))}
	}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Line: line, Setting: SettingAt(root, line), Message: m[2]}
	}
	return Problem{Setting: "(file)", Message: msg}
}

func shown(tag, value string) string {
	switch tag {
	case "map":
		return "a section of keys"
	case "seq":
		return "a list"
	}
	return fmt.Sprintf("%q", value)
}

// kindWords says what a Go type expects, for people.
func kindWords(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list (one item per line starting with -, or [a, b])"
	case strings.HasPrefix(goType, "map["):
		return "a section of keys"
	case goType == "int" || goType == "int64" || goType == "int32" || goType == "uint64":
		return "a whole number"
	case goType == "float64" || goType == "float32":
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "text"
	case strings.HasSuffix(goType, ".Secret"):
		return "a secret source: {file: PATH} or {env: VARIABLE} (never the secret itself)"
	}
	return "a section of keys"
}

// SettingAt names the setting whose key or value is on a line.
func SettingAt(root *yaml.Node, line int) string {
	if s := settingAt(root, line, ""); s != "" {
		return s
	}
	return "(file)"
}

func settingAt(n *yaml.Node, line int, path string) string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if k.Line == line && (v.Kind == yaml.ScalarNode || v.Line == line) {
				return p
			}
			if s := settingAt(v, line, p); s != "" {
				return s
			}
		}
	case yaml.SequenceNode:
		for i, el := range n.Content {
			p := path + "[" + ElementName(el, i) + "]"
			if el.Kind == yaml.ScalarNode && el.Line == line {
				return p
			}
			if s := settingAt(el, line, p); s != "" {
				return s
			}
		}
	}
	return ""
}

// LineOf finds the line of a setting path such as sites[lakeshore].schedule
// (a list element named by its id or its position): the line of the key,
// falling back to the nearest parent that exists.
func LineOf(root *yaml.Node, setting string) int {
	node, line := root, 0
	for _, part := range strings.Split(setting, ".") {
		key, elem := part, ""
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			key, elem = part[:i], part[i+1:len(part)-1]
		}
		k, v := mapEntry(node, key)
		if v == nil {
			return line
		}
		node, line = v, k.Line
		if elem == "" {
			continue
		}
		if node.Kind != yaml.SequenceNode {
			return line
		}
		var found *yaml.Node
		for i, el := range node.Content {
			if ElementName(el, i) == elem || strconv.Itoa(i) == elem {
				found = el
				break
			}
		}
		if found == nil {
			return line
		}
		node, line = found, found.Line
	}
	return line
}

func mapEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

var syntaxLineRE = regexp.MustCompile(`line (\d+)`)

func syntaxLine(err error) int {
	if m := syntaxLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}
