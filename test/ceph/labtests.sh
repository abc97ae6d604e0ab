#!/usr/bin/env bash
# test/ceph/labtests.sh: runs one Go package's tests on several Ceph labs at
# once. The Ceph plugin's tests mostly wait on the clusters (replication,
# outages, timeouts), so two labs halve their time on two cores.
#
#   labtests.sh PKG LAB...
#
# Run from the package's module. The package is built once as a test binary
# (BUILDFLAGS, default "-tags pacific -race"); each of its top-level tests
# then runs in a process of its own, in PKG's directory, with CEPH_LAB set
# to a lab no other test is using: one worker per lab takes the next test
# from a shared queue. Tests therefore never share a lab or a process, and
# need not know about each other. A test's output is printed when it ends,
# whole when it failed; the script exits 1 when any test failed.
#
# Environment: BUILDFLAGS; TEST_TIMEOUT (default 20m), the bound of one test;
# FIRST, tests (space-separated) to start before the others: the longest,
# so that no lab is left running one alone at the end; SERIAL, tests never
# run at the same time as each other (heavy ones): the first lab runs them
# one after another, then joins the queue.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '6p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }
pkg=$1
shift
labs=("$@")
BUILDFLAGS=${BUILDFLAGS:--tags pacific -race}
TEST_TIMEOUT=${TEST_TIMEOUT:-20m}
FIRST=${FIRST:-}
SERIAL=${SERIAL:-}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log() { printf '%s labtests.sh: %s\n' "$(date +%T)" "$*"; }

# shellcheck disable=SC2086 # BUILDFLAGS is a list of flags
go test -c $BUILDFLAGS -o "$tmp/pkg.test" "$pkg"
dir=$(cd "$pkg" && pwd)

# The queues: SERIAL for the first lab; FIRST, then every other top-level
# test, fuzz seed corpus and example, in the order the binary lists them,
# for all.
(cd "$dir" && "$tmp/pkg.test" -test.list '.') | grep -E '^(Test|Fuzz|Example)' >"$tmp/all"
: >"$tmp/queue"
: >"$tmp/serial"
for name in $SERIAL; do
  grep -qx -- "$name" "$tmp/all" || { log "SERIAL names $name, which $pkg does not have"; exit 2; }
  echo "$name" >>"$tmp/serial"
done
for name in $FIRST; do
  grep -qx -- "$name" "$tmp/all" || { log "FIRST names $name, which $pkg does not have"; exit 2; }
  grep -qx -- "$name" "$tmp/serial" || echo "$name" >>"$tmp/queue"
done
grep -vxF -f <(printf '%s\n' $FIRST $SERIAL) "$tmp/all" >>"$tmp/queue" || true
total=$(wc -l <"$tmp/all")
: >"$tmp/failed"
: >"$tmp/passed"
log "$total tests of $pkg on ${#labs[@]} labs"

# take prints the next test of queue file $1 and removes it; false when
# it is empty.
take() {
  local name
  {
    flock 9
    name=$(head -n 1 "$1")
    [ -z "$name" ] || sed -i 1d "$1"
  } 9>"$tmp/queue.lock"
  [ -n "$name" ] && printf '%s' "$name"
}

# next prints the test worker $1 runs next: the first worker's SERIAL
# ones, then the shared queue's.
next() {
  { [ "$1" = 0 ] && take "$tmp/serial"; } || take "$tmp/queue"
}

worker() {
  local lab=$1 rssf=$tmp/rss.$2 name out start rc secs rss timer=
  # GNU time, where there is one, for the test process's peak memory.
  [ ! -x /usr/bin/time ] || timer="/usr/bin/time -f %M -o $rssf"
  while name=$(next "$2"); do
    out=$tmp/out.$name
    start=$(date +%s.%N)
    rc=0
    (cd "$dir" && CEPH_LAB=$lab $timer "$tmp/pkg.test" -test.run "^${name}\$" -test.count=1 -test.timeout="$TEST_TIMEOUT") >"$out" 2>&1 || rc=$?
    rss=$(tail -n 1 "$rssf" 2>/dev/null) && [ -n "$rss" ] && rss=", $((rss / 1024)) MiB max RSS" || rss=
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    {
      flock 8
      if [ "$rc" = 0 ]; then
        printf 'ok   %s (%ss, %s%s)\n' "$name" "$secs" "$lab" "$rss"
        echo "$name" >>"$tmp/passed"
      else
        cat "$out"
        printf 'FAIL %s (%ss, %s, exit %s%s)\n' "$name" "$secs" "$lab" "$rc" "$rss"
        echo "$name" >>"$tmp/failed"
      fi
    } 8>"$tmp/print.lock"
  done
}

pids=()
for i in "${!labs[@]}"; do
  worker "${labs[$i]}" "$i" &
  pids+=($!)
done
broken=0
for pid in "${pids[@]}"; do
  wait "$pid" || broken=1
done

if [ -s "$tmp/failed" ]; then
  log "FAIL: $(wc -l <"$tmp/failed") of $total tests failed: $(tr '\n' ' ' <"$tmp/failed")"
  exit 1
fi
# A worker that died (a missing tool) leaves tests unrun: never "ok" then.
passed=$(wc -l <"$tmp/passed")
if [ "$broken" = 1 ] || [ "$passed" != "$total" ]; then
  log "FAIL: $passed of $total tests ran and passed; a worker ended early"
  exit 1
fi
log "ok: $total tests passed"
