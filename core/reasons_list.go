package core

import "sort"

// The catalogue of codes mirrord writes, as docs/contract.md §7 lists
// them. Other programs match on these strings, so the list is part of the
// contract: core/contract_doc_test.go checks it against the document and
// against the codes the plans of this package can produce.

// Causes lists the one-word causes Cause gives a non-nil error, in the
// order it tests them. ("none", for no error, never appears in a code.)
func Causes() []string {
	return []string{"malformed", "contradiction", "unknown_operation", "no_backend",
		"not_found", "precondition", "in_progress", "timeout", "unavailable", "unknown"}
}

// codeFamily is every code subject.kind-step-cause for its steps and
// causes.
type codeFamily struct {
	subject, kind string
	steps, causes []string
}

func (f codeFamily) codes() []string {
	var out []string
	for _, s := range f.steps {
		for _, c := range f.causes {
			out = append(out, Code(f.subject, f.kind, s, c))
		}
	}
	return out
}

func causesBut(skip string) []string {
	var out []string
	for _, c := range Causes() {
		if c != skip {
			out = append(out, c)
		}
	}
	return out
}

// inputFamilies are the codes the engine writes when a record cannot be
// used (docs/contract.md §7.2): the step names the record it was reading.
func inputFamilies() []codeFamily {
	storage := []codeFamily{
		{"", "failure", []string{"get_storage"}, []string{"malformed", "contradiction", "not_found"}},
		{"", "failure", []string{"create_storage"}, []string{"contradiction"}},
		{"", "failure", []string{"get_backend"}, []string{"no_backend"}},
	}
	var out []codeFamily
	for _, subject := range []string{"volume", "environment"} {
		for _, f := range storage {
			f.subject = subject
			out = append(out, f)
		}
		out = append(out, codeFamily{subject, "failure", []string{"decode_operation"}, []string{"malformed", "unknown_operation"}})
	}
	return append(out,
		codeFamily{"volume", "failure", []string{"get_volume"}, []string{"not_found"}},
		codeFamily{"volume", "failure", []string{"decode_volume"}, []string{"malformed", "contradiction"}},
		codeFamily{"volume", "failure", []string{"get_environment"}, []string{"malformed", "contradiction", "not_found"}},
		codeFamily{"environment", "failure", []string{"get_environment"}, []string{"not_found"}},
		codeFamily{"environment", "failure", []string{"decode_environment"}, []string{"malformed", "contradiction"}},
		codeFamily{"snapshot", "failure", []string{"decode_snapshot"}, []string{"malformed", "contradiction"}},
	)
}

// ruleFamilies are the codes the plans of this package write
// (docs/contract.md §7.3): work on the backend, and the state rules.
func ruleFamilies() []codeFamily {
	return []codeFamily{
		{"volume", "failure", []string{"observe"}, Causes()},
		{"volume", "failure", []string{"start", "resume", "pause", "stop", "delete_target"}, causesBut("in_progress")},
		{"volume", "failure", []string{"decode_operation"}, []string{"unknown_operation"}},
		{"volume", "failure", []string{"pause"}, []string{"not_replicated"}},
		{"volume", "failure", []string{"replication"}, []string{"backend_error", "lost"}},
		{"volume", "waiting", []string{"environment"}, []string{"not_ready"}},
		{"volume", "waiting", []string{"stop", "delete_target"}, []string{"in_progress"}},
		{"volume", "refused", []string{"operation"}, []string{"start", "resume", "pause", "stop", "stop_and_delete"}},
		{"environment", "failure", []string{"observe"}, Causes()},
		{"environment", "failure", []string{"prepare", "teardown"}, causesBut("in_progress")},
		{"environment", "waiting", []string{"prepare"}, []string{"not_ready"}},
		{"environment", "waiting", []string{"stop"}, []string{"volumes_remain"}},
		{"environment", "refused", []string{"operation"}, []string{"unknown_operation"}},
		{"snapshot", "failure", []string{"observe"}, Causes()},
		{"snapshot", "failure", []string{"add_snapshot", "remove_snapshot"}, causesBut("in_progress")},
	}
}

// ReasonCodes lists, sorted and once each, every code mirrord may write as
// a status's error_reason.code (docs/contract.md §7).
func ReasonCodes() []string {
	return sortedCodes(append(inputFamilies(), ruleFamilies()...))
}

// EventCodes lists, sorted, the codes that appear only in events
// (docs/contract.md §5.5), never in a status. Every status error_reason is
// reported as an event as well.
func EventCodes() []string {
	codes := []string{
		FinishedCode(SubjectVolume, OpStop),
		FinishedCode(SubjectVolume, OpStopAndDelete),
		FinishedCode(SubjectVolume, OpDestroy),
		FinishedCode(SubjectEnvironment, OpStop),
		LeftoversCode(SubjectVolume, OpStop),
		LeftoversCode(SubjectVolume, OpDestroy),
		LeftoversCode(SubjectEnvironment, OpStop),
		KeptPointCode(),
		UnintendedCode(),
		Code("snapshot", "failure", "decode_event", "malformed"),
		BadKeyCode(),
	}
	sort.Strings(codes)
	return codes
}

func sortedCodes(fams []codeFamily) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fams {
		for _, c := range f.codes() {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	sort.Strings(out)
	return out
}
