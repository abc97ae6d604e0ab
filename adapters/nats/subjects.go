package nats

import "strings"

// validSubject reports whether s is a NATS subject or subject filter:
// non-empty dot-separated tokens without white space, "*" and ">" only as
// whole tokens, ">" only last.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			return false
		}
		if t == ">" && i != len(tokens)-1 {
			return false
		}
		if t != "*" && t != ">" && strings.ContainsAny(t, "*>") {
			return false
		}
	}
	return true
}

// subsetOf reports whether every subject subject matches is also matched
// by filter: "a.b" and "a.*" are within "a.>", "a.>" is not within "a.*".
func subsetOf(subject, filter string) bool {
	st, ft := strings.Split(subject, "."), strings.Split(filter, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		switch s := st[i]; {
		case s == ">":
			return false
		case f == "*":
		case s == "*" || s != f:
			return false
		}
	}
	return len(st) == len(ft)
}

// sanitizeDurable makes name a valid JetStream durable consumer name:
// every character other than letters, digits, '-' and '_' becomes '_'.
// Two names differing only in such characters therefore share a consumer.
func sanitizeDurable(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
}
