package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/shadowplane/shadowplane/policy"
)

// maxSetAttempts bounds how often a share edit is retried after another
// writer changed the ConfigMap between our read and our write.
const maxSetAttempts = 8

// shareEdit is one requested change: the mirror or routeTo backend named
// name gets the share text, a percent as the user wrote it.
type shareEdit struct {
	name string
	text string
}

func newSetCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "set NAMESPACE/POLICY NAME=PERCENT...",
		Short: "Set a mirror's percent or a routeTo backend's weight in the policy ConfigMap",
		Long: `Set a mirror's percent or a routeTo backend's weight, by its name, without editing YAML:

  shadowplane set shop/entrance-canary canary=25
  shadowplane set shop/entrance-to-staging staging=1.5

The edit replaces only the number in the ConfigMap's text, so comments and layout stay
as they are, and it is written with the ConfigMap's resourceVersion: when someone else
changed the ConfigMap in between, the edit is re-applied to their version, never over it.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			edits, err := parseShareEdits(args[1:])
			if err != nil {
				return err
			}
			return runShareEdit(cmd, kubeconfig, args[0], func(*policy.Policy) ([]shareEdit, error) { return edits, nil })
		},
	}
	return withKubeconfigFlag(cmd, &kubeconfig)
}

func newPromoteCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "promote NAMESPACE/POLICY [BACKEND]",
		Short: "Move a split to its final state: the backend (the only one if not named) gets 100, the others 0",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShareEdit(cmd, kubeconfig, args[0], func(p *policy.Policy) ([]shareEdit, error) {
				target, err := promotedBackend(p, args[1:])
				if err != nil {
					return nil, err
				}
				var edits []shareEdit
				for _, b := range p.RouteTo {
					e := shareEdit{name: b.Name, text: "0"}
					if b.Name == target {
						e.text = "100"
					}
					edits = append(edits, e)
				}
				return edits, nil
			})
		},
	}
	return withKubeconfigFlag(cmd, &kubeconfig)
}

func newRollbackCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "rollback NAMESPACE/POLICY",
		Short: "Move a split to its initial state: every routeTo backend gets 0, all requests the stable version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShareEdit(cmd, kubeconfig, args[0], func(p *policy.Policy) ([]shareEdit, error) {
				if len(p.RouteTo) == 0 {
					return nil, fmt.Errorf("policy %s has no routeTo backends to roll back", p.Name)
				}
				edits := make([]shareEdit, len(p.RouteTo))
				for i, b := range p.RouteTo {
					edits[i] = shareEdit{name: b.Name, text: "0"}
				}
				return edits, nil
			})
		},
	}
	return withKubeconfigFlag(cmd, &kubeconfig)
}

// withKubeconfigFlag adds the --kubeconfig flag the API-writing verbs share.
func withKubeconfigFlag(cmd *cobra.Command, kubeconfig *string) *cobra.Command {
	cmd.Flags().StringVar(kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
	return cmd
}

// kubeClient connects to the API server loadKubeconfig picks.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	restConfig, _, err := loadKubeconfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

// promotedBackend picks the backend promote moves everything to.
func promotedBackend(p *policy.Policy, named []string) (string, error) {
	names := make([]string, len(p.RouteTo))
	for i, b := range p.RouteTo {
		names[i] = b.Name
	}
	switch {
	case len(p.RouteTo) == 0:
		return "", fmt.Errorf("policy %s has no routeTo backends to promote", p.Name)
	case len(named) == 1:
		for _, n := range names {
			if n == named[0] {
				return n, nil
			}
		}
		return "", fmt.Errorf("policy %s has no routeTo backend %q; its backends are: %s", p.Name, named[0], strings.Join(names, ", "))
	case len(names) > 1:
		return "", fmt.Errorf("policy %s routes to several backends (%s): name the one to promote", p.Name, strings.Join(names, ", "))
	}
	return names[0], nil
}

// parseShareEdits reads NAME=PERCENT arguments with the policy schema's own
// percent rules.
func parseShareEdits(args []string) ([]shareEdit, error) {
	var edits []shareEdit
	for _, arg := range args {
		name, value, ok := strings.Cut(arg, "=")
		if !ok || name == "" || value == "" {
			return nil, fmt.Errorf("%q: write NAME=PERCENT, e.g. canary=25", arg)
		}
		if _, problem := policy.ParsePercentText(value); problem != "" {
			return nil, fmt.Errorf("%s: %s", name, problem)
		}
		edits = append(edits, shareEdit{name: name, text: value})
	}
	return edits, nil
}

// runShareEdit finds the policy, computes its edits, and writes them with
// optimistic concurrency, re-reading and re-applying on a conflict.
func runShareEdit(cmd *cobra.Command, kubeconfig, ref string, plan func(*policy.Policy) ([]shareEdit, error)) error {
	namespace, name, ok := strings.Cut(ref, "/")
	if !ok || namespace == "" || name == "" {
		return fmt.Errorf("%q: name the policy as NAMESPACE/POLICY", ref)
	}
	client, err := kubeClient(kubeconfig)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	for attempt := 1; ; attempt++ {
		summary, err := setShares(ctx, client, namespace, name, plan)
		if apierrors.IsConflict(err) && attempt < maxSetAttempts {
			continue // someone else wrote first: apply the edit to their version
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), summary)
		return nil
	}
}

// setShares does one read-edit-write round. The write carries the
// resourceVersion it read, so a concurrent write makes it fail with a
// conflict instead of being overwritten.
func setShares(ctx context.Context, client kubernetes.Interface, namespace, name string, plan func(*policy.Policy) ([]shareEdit, error)) (string, error) {
	cm, p, err := findPolicy(ctx, client, namespace, name)
	if err != nil {
		return "", err
	}
	edits, err := plan(p)
	if err != nil {
		return "", err
	}
	key := p.Source.Key
	text, changes, err := editShares(cm.Data[key], p, edits)
	if err != nil {
		return "", fmt.Errorf("configmap %s/%s key %s policy %s: %w", namespace, cm.Name, key, name, err)
	}
	parsed, problems := policy.ParsePolicies(namespace, cm.Name, key, []byte(text), policy.ParseOptions{})
	for _, problem := range problems {
		if problem.Policy == name && !problem.Warning {
			return "", fmt.Errorf("the edit would make the policy invalid: %w", problem)
		}
	}
	if !hasPolicy(parsed, name) {
		return "", fmt.Errorf("the edit would drop policy %s from configmap %s/%s", name, namespace, cm.Name)
	}
	updated := cm.DeepCopy()
	updated.Data[key] = text
	if _, err := client.CoreV1().ConfigMaps(namespace).Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	return fmt.Sprintf("configmap %s/%s key %s policy %s: %s", namespace, cm.Name, key, name, strings.Join(changes, ", ")), nil
}

func hasPolicy(policies []*policy.Policy, name string) bool {
	for _, p := range policies {
		if p.Name == name {
			return true
		}
	}
	return false
}

// findPolicy finds the one valid policy named name among the namespace's
// policy ConfigMaps.
func findPolicy(ctx context.Context, client kubernetes.Interface, namespace, name string) (*corev1.ConfigMap, *policy.Policy, error) {
	list, err := client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: policy.PolicyConfigMapLabel + "=true"})
	if err != nil {
		return nil, nil, fmt.Errorf("list policy ConfigMaps in %s: %w", namespace, err)
	}
	var foundCM *corev1.ConfigMap
	var found *policy.Policy
	for i := range list.Items {
		cm := &list.Items[i]
		keys := make([]string, 0, len(cm.Data))
		for k := range cm.Data {
			if policy.IsPolicyKey(k) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			policies, _ := policy.ParsePolicies(namespace, cm.Name, k, []byte(cm.Data[k]), policy.ParseOptions{})
			for _, p := range policies {
				if p.Name != name {
					continue
				}
				if found != nil {
					return nil, nil, fmt.Errorf("policy %s/%s is defined twice (configmap %s key %s, configmap %s key %s)",
						namespace, name, foundCM.Name, found.Source.Key, cm.Name, k)
				}
				foundCM, found = cm, p
			}
		}
	}
	if found == nil {
		return nil, nil, fmt.Errorf("no valid policy %s in the policy ConfigMaps of namespace %s (labelled %s=true)", name, namespace, policy.PolicyConfigMapLabel)
	}
	return foundCM, found, nil
}

// editShares rewrites, in the key's text, the percent of each named mirror
// and the weight of each named routeTo backend. Only the characters of the
// number change, so comments, quoting and layout stay as the user wrote
// them. It returns the new text and a description of each change.
func editShares(text string, p *policy.Policy, shareEdits []shareEdit) (string, []string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return "", nil, err
	}
	item, err := policyNode(&doc, p.Source.Index)
	if err != nil {
		return "", nil, err
	}
	var edits []textEdit
	var changes []string
	for _, e := range shareEdits {
		list, field, index := "mirrors", "percent", -1
		for i, m := range p.Mirrors {
			if m.Name == e.name {
				index = i
			}
		}
		if index < 0 {
			list, field = "routeTo", "weight"
			for i, b := range p.RouteTo {
				if b.Name == e.name {
					index = i
				}
			}
		}
		if index < 0 {
			return "", nil, fmt.Errorf("has no mirror or routeTo backend named %q; its names are: %s", e.name, strings.Join(shareNames(p), ", "))
		}
		entry := fieldNode(item, list)
		if entry == nil || entry.Kind != yaml.SequenceNode || index >= len(entry.Content) {
			return "", nil, fmt.Errorf("%s[%d] not found in the YAML", list, index)
		}
		value := fieldNode(entry.Content[index], field)
		if value == nil {
			// A lone backend may leave its weight out (100): write one.
			insert, ok := fieldInsertion(entry.Content[index], field, e.text)
			if !ok {
				return "", nil, fmt.Errorf("%s[%d] (%s) has no %s field to change: add \"%s: ...\" to it once by hand", list, index, e.name, field, field)
			}
			edits = append(edits, insert)
			changes = append(changes, fmt.Sprintf("%s (unwritten, 100) → %s", e.name, e.text))
			continue
		}
		if value.Kind != yaml.ScalarNode || value.Style != 0 {
			return "", nil, fmt.Errorf("%s[%d].%s is not a plain number", list, index, field)
		}
		edits = append(edits, textEdit{line: value.Line, column: value.Column, old: value.Value, text: e.text})
		changes = append(changes, fmt.Sprintf("%s %s → %s", e.name, value.Value, e.text))
	}
	lines := strings.SplitAfter(text, "\n")
	// Edit from the end, so earlier positions stay valid.
	sort.Slice(edits, func(i, j int) bool {
		a, b := edits[i], edits[j]
		return a.line > b.line || (a.line == b.line && a.column > b.column)
	})
	for _, ed := range edits {
		if ed.line > len(lines) {
			if len(lines) > 0 && !strings.HasSuffix(lines[len(lines)-1], "\n") {
				lines[len(lines)-1] += "\n"
			}
			lines = append(lines, ed.text)
			continue
		}
		line := lines[ed.line-1]
		start := columnOffset(line, ed.column)
		if start < 0 || !strings.HasPrefix(line[start:], ed.old) {
			return "", nil, errors.New("could not locate the number in the text")
		}
		lines[ed.line-1] = line[:start] + ed.text + line[start+len(ed.old):]
	}
	return strings.Join(lines, ""), changes, nil
}

// textEdit replaces old, found at a 1-based line and column (in
// characters), with text; a column past the line's end inserts there, and a
// line past the end appends.
type textEdit struct {
	line, column int
	old, text    string
}

// fieldInsertion writes "field: value" into a mapping that lacks it, after
// its last value, in the mapping's own style: ", field: value" in a flow
// mapping ({service: x}), a line with the keys' indentation in a block one.
// ok is false when the last value is not a plain one-line scalar, whose end
// the node positions cannot tell.
func fieldInsertion(m *yaml.Node, field, value string) (textEdit, bool) {
	if m.Kind != yaml.MappingNode || len(m.Content) < 2 {
		return textEdit{}, false
	}
	last := m.Content[len(m.Content)-1]
	if last.Kind != yaml.ScalarNode || last.Style != 0 || strings.Contains(last.Value, "\n") {
		return textEdit{}, false
	}
	if m.Style&yaml.FlowStyle != 0 {
		end := last.Column + utf8.RuneCountInString(last.Value)
		return textEdit{line: last.Line, column: end, text: ", " + field + ": " + value}, true
	}
	indent := strings.Repeat(" ", m.Content[0].Column-1)
	return textEdit{line: last.Line + 1, column: 1, text: indent + field + ": " + value + "\n"}, true
}

// columnOffset turns yaml's 1-based column (in characters) into a byte
// offset in line; the column just past the line's text (before its
// newline) is its end.
func columnOffset(line string, column int) int {
	n := 1
	for i, r := range line {
		if n == column {
			return i
		}
		if r == '\n' {
			break
		}
		n++
	}
	if n == column {
		return len(strings.TrimSuffix(line, "\n"))
	}
	return -1
}

func shareNames(p *policy.Policy) []string {
	var names []string
	for _, m := range p.Mirrors {
		names = append(names, m.Name)
	}
	for _, b := range p.RouteTo {
		names = append(names, b.Name)
	}
	return names
}

// policyNode is the index-th entry of the document's policies list.
func policyNode(doc *yaml.Node, index int) (*yaml.Node, error) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	list := fieldNode(root, "policies")
	if list == nil || list.Kind != yaml.SequenceNode || index >= len(list.Content) {
		return nil, fmt.Errorf("policies[%d] not found in the YAML", index)
	}
	return list.Content[index], nil
}

// fieldNode is the value of a mapping's field, nil without one.
func fieldNode(n *yaml.Node, field string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == field {
			return n.Content[i+1]
		}
	}
	return nil
}
