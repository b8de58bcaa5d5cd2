package translator

// ValidateOutput lets the golden tests (package translator_test, which
// imports the watcher) run the same proto validation as the unit tests.
var ValidateOutput = validateOutput
