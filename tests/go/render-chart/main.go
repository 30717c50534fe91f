// render-chart renders a Helm chart's templates the way `helm template` does, for machines
// without helm: Go's text/template with the sprig functions plus Helm's own (include, tpl,
// toYaml, required, lookup → empty). Values come from values.yaml and --set a.b=c overrides.
// Output: every rendered manifest as a YAML stream, then NOTES.txt after a "# NOTES" line.
//
// Build (Debian: golang-go, golang-github-masterminds-sprig-dev, golang-gopkg-yaml.v3-dev):
//   GO111MODULE=off GOPATH=/usr/share/gocode go build -o render-chart .
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type files struct{ root string }

func (f files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.root, name))
	if err != nil {
		return ""
	}
	return string(b)
}

func readYAML(path string) map[string]interface{} {
	b, err := os.ReadFile(path)
	if err != nil {
		fail("read %s: %v", path, err)
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &out); err != nil {
		fail("parse %s: %v", path, err)
	}
	return out
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "render-chart: "+format+"\n", args...)
	os.Exit(1)
}

func set(values map[string]interface{}, assignment string) {
	key, raw, ok := strings.Cut(assignment, "=")
	if !ok {
		fail("--set %q: expected key=value", assignment)
	}
	var value interface{} = raw
	if i, err := strconv.ParseInt(raw, 10, 64); err == nil {
		value = int(i)
	} else if b, err := strconv.ParseBool(raw); err == nil {
		value = b
	}
	parts := strings.Split(key, ".")
	at := values
	for _, p := range parts[:len(parts)-1] {
		next, ok := at[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			at[p] = next
		}
		at = next
	}
	at[parts[len(parts)-1]] = value
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: render-chart CHART_DIR [--set key=value ...]")
	}
	chartDir := os.Args[1]
	chart := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	values := readYAML(filepath.Join(chartDir, "values.yaml"))
	for i := 2; i < len(os.Args); i++ {
		if os.Args[i] == "--set" && i+1 < len(os.Args) {
			for _, a := range strings.Split(os.Args[i+1], ",") {
				set(values, a)
			}
			i++
		}
	}
	name := fmt.Sprint(chart["name"])
	root := template.New("root")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(string, string, string, string) map[string]interface{} {
		return map[string]interface{}{}
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	templateDir := filepath.Join(chartDir, "templates")
	entries, err := os.ReadDir(templateDir)
	if err != nil {
		fail("read %s: %v", templateDir, err)
	}
	var names []string
	for _, e := range entries {
		text, err := os.ReadFile(filepath.Join(templateDir, e.Name()))
		if err != nil {
			fail("read %s: %v", e.Name(), err)
		}
		full := name + "/templates/" + e.Name()
		if _, err := root.New(full).Parse(string(text)); err != nil {
			fail("parse %s: %v", full, err)
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	release := os.Getenv("RELEASE_NAME")
	if release == "" {
		release = "test"
	}
	context := map[string]interface{}{
		"Values":       values,
		"Chart":        map[string]interface{}{"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"]},
		"Release":      map[string]interface{}{"Name": release, "Namespace": "mcp-coordinator", "Service": "Helm", "IsInstall": true},
		"Capabilities": map[string]interface{}{"KubeVersion": map[string]interface{}{"Version": "v1.32.0"}},
		"Template":     map[string]interface{}{"BasePath": name + "/templates"},
		"Files":        files{root: chartDir},
	}
	var notes string
	for _, n := range names {
		if strings.HasPrefix(n, "_") {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name+"/templates/"+n, context); err != nil {
			fail("render %s: %v", n, err)
		}
		if n == "NOTES.txt" {
			notes = buf.String()
			continue
		}
		body := strings.TrimSpace(buf.String())
		if body == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s/templates/%s\n%s\n", name, n, body)
	}
	fmt.Printf("# NOTES\n%s", notes)
}
