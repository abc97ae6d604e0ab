package app

// PreferredOf is preferredOf, for the external tests.
func PreferredOf(members []string, key string) string { return preferredOf(members, key) }
