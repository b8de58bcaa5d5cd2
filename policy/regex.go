package policy

import (
	"fmt"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// envoyRegexProgramLimit is Envoy's default ceiling on the RE2 program size
// of a configured regex (runtime key re2.max_program_size.error_level).
// Envoy rejects a larger regex, and with it the whole route configuration,
// so the parser refuses it up front.
const envoyRegexProgramLimit = 100

// regexProblem checks a header regex the way Envoy will: RE2 syntax (Go's
// regexp implements the same syntax) and RE2 program size.
func regexProblem(expr string) string {
	size, err := re2ProgramSize(expr)
	if err != nil {
		return fmt.Sprintf("is not a valid RE2 regular expression: %v", err)
	}
	if size > envoyRegexProgramLimit {
		return fmt.Sprintf("is too complex for Envoy: its RE2 program size is estimated at %d, above Envoy's limit of %d; simplify it (fewer or smaller repetitions and character classes; Unicode classes such as \\pL are large)",
			size, envoyRegexProgramLimit)
	}
	return ""
}

// re2ProgramSize parses a regex with RE2 syntax and estimates the program
// size Envoy's RE2 will report for it.
func re2ProgramSize(expr string) (int, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, err
	}
	return estimateRE2ProgramSize(prog), nil
}

// estimateRE2ProgramSize estimates, from Go's compiled program, the size
// RE2 reports for the same regex. Go matches runes while RE2 matches UTF-8
// bytes, so character classes cost RE2 more instructions. The estimate errs
// on the large side so that whatever passes here also passes Envoy; it was
// calibrated against the sizes Envoy 1.40 reports.
func estimateRE2ProgramSize(prog *syntax.Prog) int {
	size := len(prog.Inst) + 2 // RE2 adds an unanchored-start loop
	for _, inst := range prog.Inst {
		switch inst.Op {
		case syntax.InstRuneAnyNotNL:
			size++ // "any byte but newline" takes two byte ranges
		case syntax.InstRune1:
			size += utf8.RuneLen(inst.Rune[0]) - 1
		case syntax.InstRune:
			size += runeClassCost(inst.Rune) - 1
		}
	}
	return size
}

// runeClassCost estimates the RE2 instructions of a character class given
// as rune ranges (or as one case-folded rune).
func runeClassCost(ranges []rune) int {
	if len(ranges) == 1 {
		if ranges[0] < utf8.RuneSelf {
			return 1 // RE2 folds ASCII case within one instruction
		}
		return 2 * utf8.RuneLen(ranges[0])
	}
	cost := 0
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if lo < utf8.RuneSelf {
			cost++ // one byte range
			if hi < utf8.RuneSelf {
				continue
			}
			lo = utf8.RuneSelf
		}
		switch {
		case lo == utf8.RuneSelf && hi == unicode.MaxRune:
			cost++ // "every multi-byte rune", as in negated classes
		case lo == hi && hasFoldTwin(lo, ranges):
			// ſ and K (Kelvin) come with s and k under (?i); RE2 folds them
			// with their ASCII twin.
		default:
			cost += utf8.RuneLen(hi)
		}
	}
	return cost
}

// hasFoldTwin reports whether r is ſ or K and its ASCII case-folding twin
// is in the class too.
func hasFoldTwin(r rune, ranges []rune) bool {
	var twin rune
	switch r {
	case 0x17F: // ſ, LATIN SMALL LETTER LONG S
		twin = 's'
	case 0x212A: // K, KELVIN SIGN
		twin = 'k'
	default:
		return false
	}
	for i := 0; i+1 < len(ranges); i += 2 {
		if ranges[i] <= twin && twin <= ranges[i+1] {
			return true
		}
	}
	return false
}
