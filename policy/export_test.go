package policy

import "strings"

// Internals that the external tests (package policy_test, which may import
// the translator) check parse results against.
var (
	IsHTTPToken    = isHTTPToken
	RE2ProgramSize = re2ProgramSize
	RenderErrors   = renderErrors
)

const EnvoyRegexProgramLimit = envoyRegexProgramLimit

// renderErrors lists problems one per line for failure messages.
func renderErrors(errs []*PolicyError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("  ")
		if e.Warning {
			b.WriteString("warning: ")
		}
		b.WriteString(e.Error())
		b.WriteByte('\n')
	}
	return b.String()
}
