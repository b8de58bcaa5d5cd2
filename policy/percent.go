package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

const percentRule = "must be a number from 0 to 100 with at most 4 decimals"

// percentLiteralRE is a plain decimal: digits with an optional fraction.
var percentLiteralRE = regexp.MustCompile(`^([0-9]*)(?:\.([0-9]*))?$`)

// parsePercent turns a percent node into parts per million. It reads the
// literal text with exact decimal arithmetic, so 0.0001 is exactly 1 part
// per million and no float rounding can move a share. problem is empty
// when the value is valid.
func parsePercent(n *yaml.Node) (ppm uint32, problem string) {
	if n.Kind == yaml.AliasNode {
		return 0, aliasProblem(n)
	}
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Sprintf("%s, got %s", percentRule, describeNode(n))
	}
	switch n.ShortTag() {
	case tagStr:
		return 0, percentStringProblem(n.Value)
	case tagInt, tagFloat:
		return percentFromLiteral(n.Value)
	default:
		return 0, fmt.Sprintf("%s, got %s", percentRule, describeNode(n))
	}
}

// percentStringProblem explains why a quoted or %-suffixed percent is wrong
// and how to write it.
func percentStringProblem(s string) string {
	trimmed := strings.TrimSpace(s)
	if number, ok := strings.CutSuffix(trimmed, "%"); ok {
		number = strings.TrimSpace(number)
		if _, problem := percentFromLiteral(number); problem == "" {
			return fmt.Sprintf("%s, got %s: write %s, without %%", percentRule, quoteShort(s), number)
		}
	}
	if _, problem := percentFromLiteral(trimmed); problem == "" {
		return fmt.Sprintf("%s, not a string, got %s: write %s without quotes", percentRule, quoteShort(s), trimmed)
	}
	return fmt.Sprintf("%s, got %s", percentRule, quoteShort(s))
}

// percentFromLiteral parses the text of a YAML number.
func percentFromLiteral(text string) (uint32, string) {
	got := shortenText(text)
	if strings.HasPrefix(text, "-") {
		return 0, fmt.Sprintf("%s, got %s: a share cannot be negative; 0 pauses the mirror", percentRule, got)
	}
	text = strings.TrimPrefix(text, "+")
	switch strings.ToLower(text) {
	case ".nan", ".inf":
		return 0, fmt.Sprintf("%s, got %s: it must be a finite number", percentRule, got)
	}
	parts := percentLiteralRE.FindStringSubmatch(text)
	if parts == nil || parts[1]+parts[2] == "" {
		return 0, fmt.Sprintf("%s, got %s: write it as a plain decimal number such as 25 or 1.5", percentRule, got)
	}
	whole, frac := parts[1], strings.TrimRight(parts[2], "0")
	if len(whole) > 1 && whole[0] == '0' {
		return 0, fmt.Sprintf("%s, got %s: write it without leading zeros, which YAML tools may read as octal", percentRule, got)
	}
	if len(frac) > 4 {
		return 0, fmt.Sprintf("%s, got %s: 0.0001 is the smallest step", percentRule, got)
	}
	if len(whole) > 3 { // above 100 for sure, and too long to convert safely
		return 0, fmt.Sprintf("%s, got %s", percentRule, got)
	}
	w := 0
	if whole != "" {
		w, _ = strconv.Atoi(whole) // at most 3 digits: cannot fail
	}
	f, _ := strconv.Atoi((frac + "0000")[:4]) // 4 digits: cannot fail
	ppm := w*10000 + f
	if ppm > 1_000_000 {
		return 0, fmt.Sprintf("%s, got %s", percentRule, got)
	}
	return uint32(ppm), ""
}

// ParsePercentText checks a percent or weight given outside YAML (e.g. on
// the command line) by the schema's rules, and returns it in parts per
// million; problem is empty when it is valid.
func ParsePercentText(s string) (ppm uint32, problem string) {
	return percentFromLiteral(s)
}
