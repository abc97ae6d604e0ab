package core_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// These tests keep docs/contract.md true: its tables, examples and lists
// are read and compared with what core builds, decodes and decides. Each
// message names the document's line and what differs.

const contractPath = "../docs/contract.md"

// contractDoc is docs/contract.md, line by line.
type contractDoc struct{ lines []string }

func loadContract(t *testing.T) contractDoc {
	t.Helper()
	data, err := os.ReadFile(contractPath)
	if err != nil {
		t.Fatalf("read the contract: %v", err)
	}
	return contractDoc{lines: strings.Split(string(data), "\n")}
}

// where names a line of the document, 0-based index in.
func where(i int) string { return fmt.Sprintf("docs/contract.md:%d", i+1) }

// docRow is one table row: its line and its cells, backticks removed.
type docRow struct {
	line  int
	cells []string
}

func (r docRow) at() string { return where(r.line) }

// marker finds the line of "<!-- what: name -->".
func (d contractDoc) marker(t *testing.T, what, name string) int {
	t.Helper()
	want := "<!-- " + what + ": " + name + " -->"
	for i, l := range d.lines {
		if strings.TrimSpace(l) == want {
			return i
		}
	}
	t.Fatalf("docs/contract.md has no %q", want)
	return -1
}

// markers lists the names of every "<!-- what: name -->" with their lines.
func (d contractDoc) markers(what string) map[string]int {
	out := map[string]int{}
	for i, l := range d.lines {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "<!-- "+what+": "); ok {
			if name, ok := strings.CutSuffix(name, " -->"); ok {
				out[name] = i
			}
		}
	}
	return out
}

// table reads the table that follows a marker: its rows, header and
// separator left out, each with the number of cells the header has.
func (d contractDoc) table(t *testing.T, what, name string) []docRow {
	t.Helper()
	i := d.marker(t, what, name) + 1
	var header []string
	var rows []docRow
	for ; i < len(d.lines) && strings.HasPrefix(strings.TrimSpace(d.lines[i]), "|"); i++ {
		cells := splitRow(d.lines[i])
		switch {
		case header == nil:
			header = cells
		case strings.Trim(strings.Join(cells, ""), "-: ") == "":
		case len(cells) != len(header):
			t.Fatalf("%s: %d cells, the header of table %q has %d", where(i), len(cells), name, len(header))
		default:
			rows = append(rows, docRow{line: i, cells: cells})
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no table rows after <!-- %s: %s -->", where(i), what, name)
	}
	return rows
}

func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	cells := strings.Split(line, "|")
	for i, c := range cells {
		cells[i] = strings.TrimSpace(strings.ReplaceAll(c, "`", ""))
	}
	return cells
}

// block reads the fenced block that follows the line at: its first line
// and its text.
func (d contractDoc) block(t *testing.T, at int) (int, string) {
	t.Helper()
	i := at + 1
	for i < len(d.lines) && strings.TrimSpace(d.lines[i]) == "" {
		i++
	}
	if i >= len(d.lines) || !strings.HasPrefix(d.lines[i], "```") {
		t.Fatalf("%s: want a ``` block after %q", where(at), strings.TrimSpace(d.lines[at]))
	}
	start := i + 1
	for i = start; i < len(d.lines) && !strings.HasPrefix(d.lines[i], "```"); i++ {
	}
	return start, strings.Join(d.lines[start:i], "\n")
}

// words splits a cell listing names: "a, b, c"; "—" is none.
func words(cell string) []string {
	if cell == "—" || cell == "" {
		return nil
	}
	var out []string
	for _, w := range strings.Split(cell, ",") {
		out = append(out, strings.TrimSpace(w))
	}
	return out
}

// compareSets reports what one side lists and the other does not.
func compareSets(t *testing.T, at, what string, doc, code []string) {
	t.Helper()
	inDoc, inCode := map[string]bool{}, map[string]bool{}
	for _, s := range doc {
		inDoc[s] = true
	}
	for _, s := range code {
		inCode[s] = true
	}
	var onlyDoc, onlyCode []string
	for _, s := range sortedKeys(inDoc) {
		if !inCode[s] {
			onlyDoc = append(onlyDoc, s)
		}
	}
	for _, s := range sortedKeys(inCode) {
		if !inDoc[s] {
			onlyCode = append(onlyCode, s)
		}
	}
	if len(onlyDoc) > 0 {
		t.Errorf("%s: %s: the document lists %q, which the code does not", at, what, onlyDoc)
	}
	if len(onlyCode) > 0 {
		t.Errorf("%s: %s: the code has %q, which the document does not list", at, what, onlyCode)
	}
}

func docState(w string) core.State {
	if w == "no status" {
		return core.StateNone
	}
	return core.State(w)
}

func stateWords(states []core.State) []string {
	var out []string
	for _, s := range states {
		out = append(out, stateName(s))
	}
	return out
}

// docMoves reads "a → b, c; d → e" as its moves "a → b", "a → c", "d → e".
func docMoves(t *testing.T, at, cell string) []string {
	t.Helper()
	var out []string
	if cell == "—" {
		return nil
	}
	for _, group := range strings.Split(cell, ";") {
		from, tos, ok := strings.Cut(group, "→")
		if !ok {
			t.Errorf("%s: %q is not \"from → to, to\"", at, strings.TrimSpace(group))
			continue
		}
		for _, to := range words(tos) {
			out = append(out, moveName(docState(strings.TrimSpace(from)), docState(to)))
		}
	}
	return out
}

// TestContractVolumeRules: the table of §4.2 is core's volume rules, row
// by row and column by column.
func TestContractVolumeRules(t *testing.T) {
	t.Parallel()
	d := loadContract(t)
	rows := d.table(t, "table", "volume-rules")
	var ops []string
	for _, r := range rows {
		op := core.Operation(r.cells[0])
		ops = append(ops, string(op))
		var startFrom, entries, moves, ends []string
		for _, s := range core.VolumeStates {
			if core.CanStartFrom(op, s) {
				startFrom = append(startFrom, string(s))
			}
			if core.Allowed(op, core.StateNone, s, true) {
				entries = append(entries, string(s))
			}
			for _, to := range core.VolumeStates {
				if to != s && core.Allowed(op, s, to, false) {
					moves = append(moves, moveName(s, to))
				}
			}
		}
		for _, s := range append([]core.State{core.StateNone}, core.VolumeStates...) {
			if core.CanFinish(op, s) {
				ends = append(ends, stateName(s))
			}
		}
		at := r.at()
		compareSets(t, at, string(op)+" may start from", words(r.cells[1]), startFrom)
		compareSets(t, at, string(op)+" entries", words(r.cells[2]), entries)
		compareSets(t, at, string(op)+" moves", docMoves(t, at, r.cells[3]), moves)
		compareSets(t, at, string(op)+" ends from", words(r.cells[4]), ends)
	}
	var want []string
	for _, op := range core.VolumeOperations {
		want = append(want, string(op))
	}
	if !slices.Equal(ops, want) {
		t.Errorf("%s: volume-rules rows are %q, want one per operation: %q", where(rows[0].line), ops, want)
	}
}

// checkStateRules compares an environment or snapshot table with what the
// plans do.
func checkStateRules(t *testing.T, table string, want map[string]stateRules) {
	t.Helper()
	d := loadContract(t)
	rows := d.table(t, "table", table)
	seen := map[string]bool{}
	for _, r := range rows {
		name := r.cells[0]
		seen[name] = true
		rules, ok := want[name]
		if !ok {
			t.Errorf("%s: %s row %q: the code has no such row (has %q)", r.at(), table, name, sortedKeys(want))
			continue
		}
		var ends []string
		for s := range rules.ends {
			ends = append(ends, stateName(s))
		}
		compareSets(t, r.at(), name+" moves", docMoves(t, r.at(), r.cells[1]), sortedKeys(rules.moves))
		compareSets(t, r.at(), name+" ends from", words(r.cells[2]), ends)
	}
	for _, name := range sortedKeys(want) {
		if !seen[name] {
			t.Errorf("%s: %s has no row %q", where(rows[0].line), table, name)
		}
	}
}

// TestContractEnvironmentRules: §3.2's table is every change of state
// PlanEnvironment and its outcomes can write.
func TestContractEnvironmentRules(t *testing.T) {
	t.Parallel()
	checkStateRules(t, "environment-rules", environmentRules())
}

// TestContractSnapshotRules: §5.4's table is every change of state
// PlanSnapshot and its outcomes can write.
func TestContractSnapshotRules(t *testing.T) {
	t.Parallel()
	checkStateRules(t, "snapshot-rules", snapshotRules())
}

// docCodes expands a code table of §7: subject × kind × step × cause.
func docCodes(t *testing.T, rows []docRow) []string {
	t.Helper()
	var out []string
	for _, r := range rows {
		causes := words(r.cells[3])
		switch c := r.cells[3]; {
		case c == "any":
			causes = core.Causes()
		case strings.HasPrefix(c, "any but "):
			skip := words(strings.TrimPrefix(c, "any but "))
			causes = nil
			for _, c := range core.Causes() {
				if !slices.Contains(skip, c) {
					causes = append(causes, c)
				}
			}
		}
		for _, subject := range words(r.cells[0]) {
			for _, step := range words(r.cells[2]) {
				for _, cause := range causes {
					out = append(out, core.Code(subject, r.cells[1], step, cause))
				}
			}
		}
	}
	return out
}

// TestContractReasonCodes: the code tables of §7 list exactly the codes
// core.ReasonCodes lists; the rules table of §7.3 lists exactly the codes
// core's plans can write; §7.4 writes core.ReasonCodes out.
func TestContractReasonCodes(t *testing.T) {
	t.Parallel()
	d := loadContract(t)
	input := d.table(t, "table", "codes-input")
	rules := d.table(t, "table", "codes-rules")

	reached := reachableRuleCodes()
	compareSets(t, rules[0].at(), "§7.3 codes against the codes core's plans write", docCodes(t, rules), sortedKeys(reached))
	compareSets(t, input[0].at(), "§7.2 and §7.3 codes against core.ReasonCodes()",
		append(docCodes(t, input), docCodes(t, rules)...), core.ReasonCodes())
	for _, code := range sortedKeys(reached) {
		if !slices.Contains(core.ReasonCodes(), code) {
			t.Errorf("core.ReasonCodes() lacks %s, written for %s", code, reached[code])
		}
	}

	causes := d.table(t, "table", "causes")
	var docCauses []string
	for _, r := range causes {
		docCauses = append(docCauses, r.cells[0])
	}
	compareSets(t, causes[0].at(), "§7.1 causes against core.Causes()", docCauses, core.Causes())
	for _, err := range contractErrs {
		if c := core.Cause(err); !slices.Contains(core.Causes(), c) {
			t.Errorf("core.Cause(%v) = %q, not in core.Causes()", err, c)
		}
	}

	at := d.marker(t, "list", "reason-codes")
	line, text := d.block(t, at)
	var listed []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			listed = append(listed, l)
		}
	}
	if !slices.Equal(listed, core.ReasonCodes()) {
		compareSets(t, where(line), "§7.4 against core.ReasonCodes()", listed, core.ReasonCodes())
		if !t.Failed() {
			t.Errorf("%s: §7.4 is not sorted as core.ReasonCodes()", where(line))
		}
		t.Logf("§7.4 should read:\n```\n%s\n```", strings.Join(core.ReasonCodes(), "\n"))
	}
}

// TestContractEventCodes: §5.5's table lists exactly core.EventCodes().
func TestContractEventCodes(t *testing.T) {
	t.Parallel()
	d := loadContract(t)
	rows := d.table(t, "table", "event-codes")
	var codes []string
	for _, r := range rows {
		codes = append(codes, r.cells[0])
	}
	compareSets(t, rows[0].at(), "§5.5 event codes against core.EventCodes()", codes, core.EventCodes())
	for _, c := range core.EventCodes() {
		if slices.Contains(core.ReasonCodes(), c) {
			t.Errorf("%s is both an event-only code and a reason code", c)
		}
	}
}

// TestContractCodesInSources: every full code spelled as a string in the
// repository's Go files (code and tests) is one the contract lists, and
// every code prefix spelled there starts some listed code. Codes of the
// original daemon's older form (§7.1: its subjects name routines, such as
// volume_worker_run) are read, never written, and are left out.
func TestContractCodesInSources(t *testing.T) {
	t.Parallel()
	known := append(core.ReasonCodes(), core.EventCodes()...)
	ours := func(s string) bool {
		subject, _, _ := strings.Cut(strings.TrimPrefix(s, core.CodePrefix), ".")
		return subject == "" || subject == "volume" || subject == "environment" || subject == "snapshot"
	}
	root := ".."
	n := 0
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if name := e.Name(); path != root && (strings.HasPrefix(name, ".") || name == "var" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // not ours to judge
		}
		ast.Inspect(f, func(node ast.Node) bool {
			lit, ok := node.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || !strings.HasPrefix(s, core.CodePrefix) || !ours(s) {
				return true
			}
			n++
			if strings.HasSuffix(s, ".") || strings.HasSuffix(s, "-") {
				if !slices.ContainsFunc(known, func(c string) bool { return strings.HasPrefix(c, s) }) {
					t.Errorf("%s: code prefix %q starts no code docs/contract.md §7 or §5.5 lists", fset.Position(lit.Pos()), s)
				}
				return true
			}
			if !slices.Contains(known, s) {
				t.Errorf("%s: code %q is not listed in docs/contract.md §7 or §5.5", fset.Position(lit.Pos()), s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("walk the repository: %v", err)
	}
	if n == 0 {
		t.Fatalf("found no code spelled out in the repository's Go files: is %s its root?", root)
	}
}

// placeholders fills a key form's {c}, {s}, {t}, {v} and {n} from a
// parsed key.
func placeholders(p core.ParsedKey) *strings.Replacer {
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	switch p.Kind {
	case core.KindStorage, core.KindStorageMetadata:
		return strings.NewReplacer("{c}", u(p.Storage.ClusterID), "{s}", u(p.Storage.StorageID))
	case core.KindClusterVolume:
		return strings.NewReplacer("{c}", u(p.Cluster), "{v}", u(p.VolumeID))
	}
	return strings.NewReplacer("{s}", u(p.Env.Source), "{t}", u(p.Env.Target),
		"{v}", u(p.Volume.VolumeID), "{n}", u(p.Snapshot.SnapshotID))
}

// TestContractKeys: every example of §2.1 parses with core.ParseKey, is
// built back byte for byte by core's builders, and is its row's key form
// filled in; every kind of key core knows has a row, and so do the leader
// keys of environments and volumes.
func TestContractKeys(t *testing.T) {
	t.Parallel()
	d := loadContract(t)
	rows := d.table(t, "table", "keys")
	kinds := map[string]bool{}
	for _, r := range rows {
		form, example := r.cells[0], r.cells[1]
		key, leader := strings.CutPrefix(example, core.DefaultLeaderPrefix)
		p, err := core.ParseKey(key)
		if err != nil {
			t.Errorf("%s: example %q: core.ParseKey: %v", r.at(), example, err)
			continue
		}
		built := rebuild(p)
		if leader {
			if p.Kind != core.KindEnvironment && p.Kind != core.KindVolume {
				t.Errorf("%s: leader key %q leads a %s; only environments and volumes have leaders", r.at(), example, p.Kind)
			}
			built = core.LeaderKey(core.DefaultLeaderPrefix, built)
			kinds["leader of "+p.Kind.String()] = true
		} else {
			kinds[p.Kind.String()] = true
		}
		if built != example {
			t.Errorf("%s: example %q is built back as %q", r.at(), example, built)
		}
		if filled := placeholders(p).Replace(form); filled != example {
			t.Errorf("%s: key form %q with the example's ids is %q, not the example %q", r.at(), form, filled, example)
		}
	}
	var want []string
	for k := core.KindUnknown + 1; k.String() != "KeyKind("+strconv.Itoa(int(k))+")"; k++ {
		want = append(want, k.String())
	}
	want = append(want, "leader of environment", "leader of volume")
	compareSets(t, rows[0].at(), "kinds of key in §2.1", sortedKeys(kinds), want)
}

// contractRecords maps each record table of the document to the Go type
// that reads or writes that JSON, and the fields of the type it leaves out.
var contractRecords = map[string]struct {
	typ  reflect.Type
	skip []string
}{
	"storage":             {reflect.TypeFor[core.Storage](), nil},
	"cluster_volume":      {reflect.TypeFor[core.ClusterVolume](), nil},
	"environment":         {reflect.TypeFor[core.EnvironmentSpec](), nil},
	"storage_reference":   {reflect.TypeFor[core.StorageRef](), nil},
	"mirror_volume":       {reflect.TypeFor[core.MirrorVolume](), nil},
	"agent":               {reflect.TypeFor[core.Agent](), nil},
	"operation":           {reflect.TypeFor[core.OperationRecord](), nil},
	"status":              {reflect.TypeFor[core.Status](), nil},
	"kept_recovery_point": {reflect.TypeFor[core.KeptRecoveryPoint](), nil},
	"reason":              {reflect.TypeFor[core.Reason](), nil},
	"snapshot":            {reflect.TypeFor[core.SnapshotRecord](), nil},
	"snapshot_message":    {reflect.TypeFor[core.SnapshotRecord](), []string{"deleted"}},
	"event":               {reflect.TypeFor[ports.Event](), nil},
}

// jsonType is the word the document uses for a Go type's JSON.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Time]():
		return "time"
	case t.Kind() == reflect.Struct:
		return "object"
	case t.Kind() == reflect.Slice:
		return "array"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	}
	return t.String()
}

// TestContractRecords: each record table lists exactly the JSON fields of
// its Go type, with their JSON type; a field the type may leave out
// (omitempty) is not said to be required.
func TestContractRecords(t *testing.T) {
	t.Parallel()
	d := loadContract(t)
	tables := d.markers("record")
	compareSets(t, "docs/contract.md", "record tables", sortedKeys(tables), sortedKeys(contractRecords))
	for _, name := range sortedKeys(contractRecords) {
		if _, ok := tables[name]; !ok {
			continue
		}
		rec := contractRecords[name]
		rows := d.table(t, "record", name)
		type field struct {
			typ       string
			omitempty bool
		}
		fields := map[string]field{}
		for i := range rec.typ.NumField() {
			f := rec.typ.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == "" || tag == "-" || slices.Contains(rec.skip, tag) {
				continue
			}
			fields[tag] = field{jsonType(f.Type), strings.Contains(opts, "omitempty")}
		}
		var docFields []string
		for _, r := range rows {
			name, typ, required := r.cells[0], r.cells[1], r.cells[2]
			docFields = append(docFields, name)
			f, ok := fields[name]
			if !ok {
				continue // reported below
			}
			if w, _, _ := strings.Cut(typ, " "); w != f.typ {
				t.Errorf("%s: field %s is a JSON %s, the document says %q", r.at(), name, f.typ, typ)
			}
			if f.omitempty && required != "no" {
				t.Errorf("%s: field %s may be left out (omitempty), the document says required %q", r.at(), name, required)
			}
			if required != "yes" && required != "no" {
				t.Errorf("%s: field %s: required is %q, want yes or no", r.at(), name, required)
			}
		}
		compareSets(t, rows[0].at(), "fields of "+name+" ("+rec.typ.String()+")", docFields, sortedKeys(fields))
	}
}

// decodeStrict decodes data into v refusing unknown fields, so an example
// cannot show a field the record does not have.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkExample decodes one JSON example of the document as what label
// names: a key, "message {subject}" or "event".
func checkExample(label string, data []byte) error {
	known := append(core.ReasonCodes(), core.EventCodes()...)
	switch {
	case label == "event":
		var e ports.Event
		if err := decodeStrict(data, &e); err != nil {
			return err
		}
		if !slices.Contains(known, e.Code) {
			return fmt.Errorf("code %q is not listed in §7 or §5.5", e.Code)
		}
		return nil
	case strings.HasPrefix(label, "message "):
		_, err := core.DecodeSnapshotEvent(data)
		return err
	}
	p, err := core.ParseKey(label)
	if err != nil {
		return err
	}
	switch p.Kind {
	case core.KindStorage:
		_, err = core.DecodeStorage(p.Storage, data)
	case core.KindStorageMetadata:
		_, err = core.DecodeStorageMetadata(p.Storage, data)
	case core.KindClusterVolume:
		var v core.ClusterVolume
		err = decodeStrict(data, &v)
	case core.KindEnvironment:
		_, err = core.DecodeEnvironment(p.Env, data)
	case core.KindEnvironmentOperation:
		_, err = core.DecodeEnvironmentOperation(data)
	case core.KindVolume:
		_, err = core.DecodeMirrorVolume(p.Volume, data)
	case core.KindVolumeOperation:
		_, err = core.DecodeVolumeOperation(data)
	case core.KindSnapshot:
		_, err = core.DecodeSnapshotRecord(p.Snapshot, data)
	case core.KindEnvironmentStatus, core.KindVolumeStatus, core.KindSnapshotStatus:
		var st core.Status
		if err = decodeStrict(data, &st); err != nil {
			return err
		}
		if _, err = core.DecodeStatus(data); err != nil {
			return err
		}
		if st.ErrorReason != nil && !slices.Contains(core.ReasonCodes(), st.ErrorReason.Code) {
			return fmt.Errorf("error_reason.code %q is not listed in §7", st.ErrorReason.Code)
		}
	default:
		return fmt.Errorf("no decoder for a %s", p.Kind)
	}
	return err
}

// TestContractExamples: every JSON example decodes as the record it is an
// example of, with the decoder mirrord uses, checked against its key.
func TestContractExamples(t *testing.T) {
	t.Parallel()
	d := loadContract(t)
	n := 0
	for i, l := range d.lines {
		label, ok := strings.CutPrefix(strings.TrimSpace(l), "<!-- example: ")
		if !ok {
			continue
		}
		label = strings.TrimSuffix(label, " -->")
		line, text := d.block(t, i)
		n++
		if err := checkExample(label, []byte(text)); err != nil {
			t.Errorf("%s: the example of %s does not decode: %v", where(line), label, err)
		}
	}
	if n == 0 {
		t.Fatal("docs/contract.md has no <!-- example: ... --> blocks")
	}
}

// TestContractSubjects: §5.1 lists the default subjects the engine
// declares (app's Default*Subject constants, read from its source, since
// core may not import app).
func TestContractSubjects(t *testing.T) {
	t.Parallel()
	d := loadContract(t)
	rows := d.table(t, "table", "subjects")
	var docSubjects []string
	for _, r := range rows {
		docSubjects = append(docSubjects, r.cells[0])
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob("../app/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("find app's sources: %v (%d files)", err, len(files))
	}
	var code []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if !strings.HasPrefix(name.Name, "Default") || !strings.HasSuffix(name.Name, "Subject") || i >= len(spec.Values) {
					continue
				}
				if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					code = append(code, s)
				}
			}
			return true
		})
	}
	compareSets(t, rows[0].at(), "§5.1 subjects against app's Default*Subject constants", docSubjects, code)
}
