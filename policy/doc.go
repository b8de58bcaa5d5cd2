// Package policy owns shadowplane's mirror policy schema: the typed policies
// (Policy, Mirror, Match, Guard, ...) and the parser that reads them from the
// YAML of policy ConfigMaps. ParsePolicies validates one data key and
// explains every problem with its field path and line (PolicyError);
// ParseConfigMapFile does the same for whole manifest files, for
// `shadowplane validate`. The policies it returns are validated and
// defaulted, so the translator can trust them. It knows nothing about the
// cluster: checking a policy's Service references is the translator's job.
package policy
