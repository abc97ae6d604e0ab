#!/usr/bin/env bash
# test/ceph/cluster.sh: a two- or three-cluster Ceph lab (Ceph 16.2 "pacific", Debian
# packages) on loopback for mirror's Ceph plugin tests. No systemd, cephadm or
# containers: every daemon is a plain foreground process under setsid, and all
# state lives under one directory. See test/ceph/README.md.
#
#   cluster.sh install          install the Debian packages (idempotent)
#   cluster.sh up DIR           site-a + site-b (+ site-c when IP_C is set): 1 mon,
#                               1 memstore OSD, 1 mgr each, cephx, pool "volumes"
#                               (rbd) on each; HEALTH_OK
#   cluster.sh mirror DIR       optional: image-mode mirroring A -> B, peer, rbd-mirror on B
#   cluster.sh unmirror DIR     undo mirror: stop that rbd-mirror, remove its peer
#   cluster.sh env DIR          shell exports for tests (also in DIR/lab.json)
#   cluster.sh status DIR       daemons and health
#   cluster.sh selftest DIR     quick check that both clusters work (< 60 s)
#   cluster.sh down DIR         stop the lab's daemons (and any rbd-mirror run from DIR)
#   cluster.sh purge DIR        down + rm -rf DIR
#
# Environment: IP_A (default 127.0.0.1), IP_B (default 127.0.0.2): loopback
# addresses of the two sites; anything outside 127/8 is refused. IP_C (no
# default): when set, `up` builds a third site, site-c, on it. Only one lab
# per address set (the mons use the fixed ports 3300 and 6789).
# UP_TIMEOUT (default 120): seconds `up` waits for HEALTH_OK before it stops
# what it started and fails.
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd ceph-mgr rbd-mirror ceph-common librados-dev librbd-dev)
POOL=volumes
IP_A=${IP_A:-127.0.0.1}
IP_B=${IP_B:-127.0.0.2}
IP_C=${IP_C:-}
UP_TIMEOUT=${UP_TIMEOUT:-120}
PY=/usr/bin/python3 # not the python3 on PATH: that may be a pyenv without the rados module

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

log() { printf '%s cluster.sh: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '7,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

# lab_dir DIR: the absolute path of DIR (which need not exist yet).
lab_dir() {
  [ -n "${1:-}" ] || usage
  local d=$1
  case $d in /*) ;; *) d=$PWD/$d ;; esac
  d=$(realpath -m -- "$d")
  [ "$d" != / ] || die "refusing DIR=/"
  printf '%s' "$d"
}

check_ip() {
  local ip=$1 o1 o2 o3 o4 rest
  IFS=. read -r o1 o2 o3 o4 rest <<<"$ip"
  [ -z "$rest" ] && [ "$o1" = 127 ] || die "address $ip is outside 127.0.0.0/8: refused"
  local o
  for o in "$o2" "$o3" "$o4"; do
    [[ $o =~ ^[0-9]{1,3}$ ]] && [ "$o" -le 255 ] || die "bad address $ip"
  done
}

need_bins() {
  local b
  for b in ceph ceph-mon ceph-osd ceph-mgr ceph-authtool monmaptool rbd rbd-mirror; do
    command -v "$b" >/dev/null || die "$b not found: run '$0 install' first"
  done
}

# site_* helpers. Sites are "a", "b" and the optional "c"; clusters are named
# site-a, site-b, site-c.
conf_of() { printf '%s/site-%s/site-%s.conf' "$D" "$1" "$1"; }
keyring_of() { printf '%s/site-%s/site-%s.client.admin.keyring' "$D" "$1" "$1"; }
ip_of() {
  case $1 in
    a) printf '%s' "$IP_A" ;;
    b) printf '%s' "$IP_B" ;;
    c) printf '%s' "$IP_C" ;;
  esac
}
# wanted_sites: the sites `up` builds: a and b, and c when IP_C is set.
wanted_sites() { if [ -n "$IP_C" ]; then echo a b c; else echo a b; fi; }
# lab_sites: the sites of the lab in DIR (site-c only when it was built).
lab_sites() { if [ -f "$(conf_of c)" ]; then echo a b c; else echo a b; fi; }
# mon_host_of SITE: from the lab's conf once it exists (IP_* only matter to up).
mon_host_of() {
  if [ -f "$(conf_of "$1")" ]; then
    sed -n 's/^mon host = //p' "$(conf_of "$1")"
  else
    printf '[v2:%s:3300,v1:%s:6789]' "$(ip_of "$1")" "$(ip_of "$1")"
  fi
}

# ceph_s SITE [--to SECONDS] ARGS...: the ceph CLI as client.admin of site-SITE.
# Every call is bounded: a missing mon would otherwise hang for 5 minutes.
ceph_s() {
  local s=$1 to=20; shift
  if [ "${1:-}" = --to ]; then to=$2; shift 2; fi
  # The keyring goes in through CEPH_ARGS: given as --keyring, the ceph CLI
  # first complains on stderr that it found no keyring in /etc/ceph.
  CEPH_ARGS="--keyring $(keyring_of "$s")" timeout "$to" ceph --cluster "site-$s" -c "$(conf_of "$s")" "$@"
}
rbd_s() {
  local s=$1 to=30; shift
  if [ "${1:-}" = --to ]; then to=$2; shift 2; fi
  timeout "$to" rbd --cluster "site-$s" -c "$(conf_of "$s")" --keyring "$(keyring_of "$s")" "$@"
}

# pid_ok PID: the process is alive, not a zombie, and was started from this lab
# (its command line names DIR/). Guards against recycled pids.
pid_ok() {
  local pid=$1 cmd
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [ -n "$cmd" ] || return 1 # zombie
  [[ $cmd == *"$D/"* ]]
}

# launch SITE LABEL CMD...: run a daemon in the foreground in a session of its
# own, record "pid site-SITE LABEL" in DIR/pids.
launch() {
  local s=$1 label=$2; shift 2
  local out=$D/site-$s/log/$label.out
  # fd 9 is the lab lock: the daemon must not inherit it.
  setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
  local pid=$!
  echo "$pid site-$s $label" >>"$D/pids"
  sleep 0.1
  pid_ok "$pid" || die "site-$s: $label exited at once, see $out"
}

# wait_for DEADLINE DESCRIPTION CMD...: retry CMD until it succeeds or SECONDS
# reaches DEADLINE.
wait_for() {
  local deadline=$1 what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
}

lock_lab() {
  mkdir -p "$D"
  exec 9>"$D/.lock"
  flock -w 300 9 || die "another cluster.sh holds $D/.lock"
}

# ---------------------------------------------------------------- install

cmd_install() {
  "$repo/.ci/install-packages" "${PACKAGES[@]}"
  need_bins
  ceph --version
}

# ---------------------------------------------------------------- up

write_conf() {
  local s=$1 ip dir
  ip=$(ip_of "$s")
  dir=$D/site-$s
  # No keyring in [global] or [client]: clients (the Go library in tests) pass
  # their key explicitly; the CLI calls here pass --keyring. Daemons find
  # theirs in their data directories (the daemons' default $xxx_data/keyring).
  cat >"$dir/site-$s.conf" <<EOF
[global]
fsid = $FSID
mon host = [v2:$ip:3300,v1:$ip:6789]
public addr = $ip
cluster addr = $ip
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mgr initial modules = iostat
run dir = $dir/run
crash dir = $dir/crash

[mon]
mon data = $dir/mon/\$id
log file = $dir/log/\$cluster-\$name.log
mon cluster log file = $dir/log/\$cluster.\$channel.log

[osd]
osd data = $dir/osd/\$id
osd objectstore = memstore
memstore device bytes = 2147483648
log file = $dir/log/\$cluster-\$name.log

[mgr]
mgr data = $dir/mgr/\$id
log file = $dir/log/\$cluster-\$name.log

[client.rbd-mirror.local]
log file = $dir/log/\$cluster-\$name.log
admin socket = $dir/run/\$cluster-\$name.asok
rbd mirror pool replayers refresh interval = 5
rbd mirror image state check interval = 5
EOF
}

# build_site SITE DEADLINE: create and start one cluster, up to its pool.
build_site() {
  local s=$1 deadline=$2 c=site-$1
  local dir=$D/site-$s conf
  conf=$(conf_of "$s")
  mkdir -p "$dir"/{run,log,crash,mon,osd,mgr/x,tmp}
  FSID=$(uuidgen)
  write_conf "$s"

  # mon
  ceph-authtool --create-keyring "$dir/tmp/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$(keyring_of "$s")" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/tmp/mon.keyring" --import-keyring "$(keyring_of "$s")" >/dev/null
  monmaptool --create --fsid "$FSID" --addv a "$(mon_host_of "$s")" "$dir/tmp/monmap" >/dev/null
  ceph-mon --cluster "$c" -c "$conf" --mkfs -i a --monmap "$dir/tmp/monmap" \
    --keyring "$dir/tmp/mon.keyring" >>"$dir/log/mkfs.out" 2>&1 || die "$c: mon mkfs failed, see $dir/log/mkfs.out"
  launch "$s" mon.a ceph-mon --cluster "$c" -c "$conf" -i a -f
  wait_for "$deadline" "$c mon" ceph_s "$s" --to 5 mon stat || return 1

  # osd (memstore: all data in RAM, capped at memstore device bytes)
  local uuid secret id
  uuid=$(uuidgen)
  secret=$(ceph-authtool --gen-print-key)
  id=$(echo '{"cephx_secret": "'"$secret"'"}' | ceph_s "$s" osd new "$uuid" -i -) || die "$c: osd new failed"
  mkdir -p "$dir/osd/$id"
  ceph-authtool --create-keyring "$dir/osd/$id/keyring" --name "osd.$id" --add-key "$secret" >/dev/null
  ceph-osd --cluster "$c" -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" \
    >>"$dir/log/mkfs.out" 2>&1 || die "$c: osd mkfs failed, see $dir/log/mkfs.out"
  launch "$s" "osd.$id" ceph-osd --cluster "$c" -c "$conf" -i "$id" -f

  # mgr
  ceph_s "$s" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "$dir/mgr/x/keyring" || die "$c: mgr key failed"
  launch "$s" mgr.x ceph-mgr --cluster "$c" -c "$conf" -i x -f

  # pool (size 1 from "osd pool default size"); rbd pool init writes an object,
  # so it returns once the PGs are active.
  ceph_s "$s" osd pool create "$POOL" 8 8 replicated >/dev/null 2>&1 || die "$c: pool create failed"
  local left=$((deadline - SECONDS))
  [ "$left" -gt 0 ] || return 1
  rbd_s "$s" --to "$left" pool init "$POOL" || { log "$c: rbd pool init failed or timed out"; return 1; }
  rm -rf "$dir/tmp"
}

health_ok() { [ "$(ceph_s "$1" --to 5 health 2>/dev/null)" = HEALTH_OK ]; }

# cluster_alive [SITES...]: DIR/pids names the mons, OSDs and mgrs of every
# site of the lab (or of SITES), all alive.
cluster_alive() {
  [ -s "$D/pids" ] || return 1
  local want=("$@")
  [ ${#want[@]} -gt 0 ] || read -r -a want <<<"$(lab_sites)"
  local pid site label n=0 s
  for s in "${want[@]}"; do
    grep -q " site-$s " "$D/pids" || return 1
  done
  while read -r pid site label; do
    case $label in rbd-mirror*) continue ;; esac
    pid_ok "$pid" || return 1
    n=$((n + 1))
  done <"$D/pids"
  [ "$n" -ge $((3 * ${#want[@]})) ]
}

cmd_up() {
  D=$(lab_dir "${1:-}")
  check_ip "$IP_A"
  check_ip "$IP_B"
  [ "$IP_A" != "$IP_B" ] || die "IP_A and IP_B must differ"
  if [ -n "$IP_C" ]; then
    check_ip "$IP_C"
    [ "$IP_C" != "$IP_A" ] && [ "$IP_C" != "$IP_B" ] || die "IP_C must differ from IP_A and IP_B"
  fi
  local sites
  read -r -a sites <<<"$(wanted_sites)"
  need_bins
  lock_lab
  if cluster_alive "${sites[@]}"; then
    log "already up ($D)"
    write_lab_files
    return 0
  fi
  local t0=$SECONDS
  # Leftovers of an earlier lab in DIR: stop them and rebuild from scratch
  # (memstore keeps data in RAM only, so nothing survives a restart anyway).
  stop_lab
  rm -rf "$D/site-a" "$D/site-b" "$D/site-c" "$D/pids" "$D/lab.json" "$D/env.sh"
  chmod 700 "$D"
  local s ip port
  for s in "${sites[@]}"; do
    ip=$(ip_of "$s")
    for port in 3300 6789; do
      if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then
        die "$ip:$port is already in use (another lab on this address? pick IP_A/IP_B/IP_C)"
      fi
    done
  done
  : >"$D/pids"
  local deadline=$((SECONDS + UP_TIMEOUT))
  log "building ${sites[*]/#/site-} ($IP_A $IP_B${IP_C:+ $IP_C}) in $D"
  local pids=() ok=1 p
  for s in "${sites[@]}"; do
    (build_site "$s" "$deadline") &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || ok=0; done
  for s in "${sites[@]}"; do
    [ "$ok" = 1 ] || break
    wait_for "$deadline" "site-$s HEALTH_OK" health_ok "$s" || ok=0
  done
  if [ "$ok" != 1 ]; then
    local h=""
    for s in "${sites[@]}"; do h+=" $s=$(ceph_s "$s" --to 5 health 2>&1 | head -3 || true)"; done
    log "up failed; health:$h"
    log "stopping what was started; logs are in $D/site-*/log"
    stop_lab
    exit 1
  fi
  write_lab_files
  local where=""
  for s in "${sites[@]}"; do where+=" site-$s $(mon_host_of "$s"),"; done
  log "up in $((SECONDS - t0)) s:$where pool $POOL"
}

# ---------------------------------------------------------------- env / lab.json

admin_key_of() { ceph-authtool -p -n client.admin "$(keyring_of "$1")"; }
fsid_of() { sed -n 's/^fsid = //p' "$(conf_of "$1")"; }

# lab_vars: NAME=VALUE lines, the one source of `env` and DIR/lab.json.
lab_vars() {
  local s S
  echo "CEPH_LAB=$D"
  echo "CEPH_POOL=$POOL"
  for s in $(lab_sites); do
    S=${s^^}
    echo "CEPH_${S}_CLUSTER=site-$s"
    echo "CEPH_${S}_CONF=$(conf_of "$s")"
    echo "CEPH_${S}_MON_HOST=$(mon_host_of "$s")"
    echo "CEPH_${S}_FSID=$(fsid_of "$s")"
    echo "CEPH_${S}_ADMIN_USER=client.admin"
    echo "CEPH_${S}_ADMIN_KEY=$(admin_key_of "$s")"
    echo "CEPH_${S}_KEYRING=$(keyring_of "$s")"
  done
}

write_lab_files() {
  local vars
  vars=$(lab_vars) || die "cannot read the lab's conf and keyrings in $D"
  (
    umask 077
    printf '%s\n' "$vars" | "$PY" -c '
import json, sys
d = {}
for line in sys.stdin:
    k, _, v = line.rstrip("\n").partition("=")
    d[k] = v
json.dump(d, sys.stdout, indent=2, sort_keys=True)
print()
' >"$D/lab.json.tmp"
    mv -f "$D/lab.json.tmp" "$D/lab.json"
    printf '%s\n' "$vars" | while IFS= read -r l; do printf 'export %s=%q\n' "${l%%=*}" "${l#*=}"; done >"$D/env.sh"
  )
  chmod 600 "$D/lab.json" "$D/env.sh"
}

cmd_env() {
  D=$(lab_dir "${1:-}")
  cluster_alive || die "no running lab in $D (run: $0 up $D)"
  [ -f "$D/env.sh" ] || write_lab_files
  cat "$D/env.sh"
}

# ---------------------------------------------------------------- mirror (optional)

mirror_daemon_ok() { rbd_s b --to 10 mirror pool status "$POOL" | grep -q 'daemon health: OK'; }
mirror_asok() { printf '%s/site-b/run/site-b-client.rbd-mirror.local.asok' "$D"; }

cmd_mirror() {
  D=$(lab_dir "${1:-}")
  lock_lab
  cluster_alive || die "lab in $D is not up (run: $0 up $D)"
  local pid site label
  while read -r pid site label; do
    if [ "$label" = rbd-mirror ] && pid_ok "$pid"; then
      log "rbd-mirror already running (pid $pid)"
      return 0
    fi
  done <"$D/pids"
  local t0=$SECONDS
  rbd_s a mirror pool enable "$POOL" image --site-name site-a
  rbd_s b mirror pool enable "$POOL" image --site-name site-b
  ceph_s b auth get-or-create client.rbd-mirror.local mon 'profile rbd-mirror' osd 'profile rbd' \
    -o "$D/site-b/site-b.client.rbd-mirror.local.keyring"
  # Manual peer (the Go plugin's way: peer site + mon_host/key attributes).
  if ! rbd_s b mirror pool info "$POOL" --format json | grep -q '"site_name":"site-a"'; then
    ceph_s a auth get-or-create client.rbd-mirror-peer mon 'profile rbd-mirror-peer' osd 'profile rbd' >/dev/null
    (umask 077 && ceph_s a auth print-key client.rbd-mirror-peer >"$D/site-b/site-a.peer.key")
    rbd_s b mirror pool peer add "$POOL" client.rbd-mirror-peer@site-a --direction rx-only \
      --remote-mon-host "$(mon_host_of a)" --remote-key-file "$D/site-b/site-a.peer.key" >/dev/null
    rm -f "$D/site-b/site-a.peer.key"
  fi
  # cwd DIR/site-b: the daemon re-reads its local conf as ./site-b.conf.
  # CEPH_ARGS --run-dir: librados applies it to the remote (site-a) connection
  # too, so that connection's admin socket lands in DIR, not /var/run/ceph.
  # No CEPH_CONF: it would be read for the remote cluster as well.
  (
    cd "$D/site-b"
    export CEPH_ARGS="--run-dir $D/site-b/run"
    unset CEPH_CONF
    launch b rbd-mirror rbd-mirror --cluster site-b -c "$(conf_of b)" -n client.rbd-mirror.local \
      --keyring "$D/site-b/site-b.client.rbd-mirror.local.keyring" -f
  )
  local deadline=$((SECONDS + 60))
  wait_for "$deadline" "rbd-mirror daemon health OK" mirror_daemon_ok ||
    die "rbd-mirror did not report healthy, see $D/site-b/log"
  log "mirroring A -> B ready in $((SECONDS - t0)) s; asok $(mirror_asok)"
}

# cmd_unmirror: undo cmd_mirror: stop the lab's rbd-mirror and remove its
# site-a peer, so the plugin under test is again the only rbd-mirror on B.
cmd_unmirror() {
  D=$(lab_dir "${1:-}")
  lock_lab
  cluster_alive || die "lab in $D is not up"
  local mirrors=() kept=() pid site label
  while read -r pid site label; do
    if [ "$label" = rbd-mirror ]; then mirrors+=("$pid"); else kept+=("$pid $site $label"); fi
  done <"$D/pids"
  stop_pids ${mirrors[@]+"${mirrors[@]}"}
  local line
  for line in ${kept[@]+"${kept[@]}"}; do echo "$line"; done >"$D/pids"
  local uuid
  uuid=$(rbd_s b mirror pool info "$POOL" --format json |
    "$PY" -c 'import json,sys; print(next((p["uuid"] for p in json.load(sys.stdin).get("peers",[]) if p.get("site_name")=="site-a"),""))')
  [ -z "$uuid" ] || rbd_s b mirror pool peer remove "$POOL" "$uuid"
  log "unmirrored: the lab's rbd-mirror stopped, its peer removed"
}

# ---------------------------------------------------------------- down / purge

# lab_rbd_mirrors: pids of rbd-mirror processes whose command line names DIR/
# (the lab's own and any the plugin under test started with state in DIR).
lab_rbd_mirrors() {
  local p cmd exe
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' '\n' 2>/dev/null <"$p/cmdline") || continue
    exe=$(head -n1 <<<"$cmd")
    [ "${exe##*/}" = rbd-mirror ] || continue
    [[ $cmd == *"$D/"* ]] && echo "${p#/proc/}"
  done
}

# stop_pids PID...: TERM, wait up to 15 s, then KILL what is left.
stop_pids() {
  local live=() p
  for p in "$@"; do pid_ok "$p" && live+=("$p"); done
  [ ${#live[@]} -gt 0 ] || return 0
  kill -TERM "${live[@]}" 2>/dev/null || true
  local i
  for ((i = 0; i < 150; i++)); do
    local left=()
    for p in "${live[@]}"; do pid_ok "$p" && left+=("$p"); done
    [ ${#left[@]} -gt 0 ] || return 0
    sleep 0.1
  done
  log "killing ${left[*]} (still alive 15 s after TERM)"
  kill -KILL "${left[@]}" 2>/dev/null || true
}

# stop_lab: rbd-mirror first (it needs live mons and OSDs to shut down), then
# OSDs and mgrs, then mons.
stop_lab() {
  local mirrors=() daemons=() mons=() pid site label
  if [ -f "$D/pids" ]; then
    while read -r pid site label; do
      case $label in
        rbd-mirror*) mirrors+=("$pid") ;;
        mon.*) mons+=("$pid") ;;
        *) daemons+=("$pid") ;;
      esac
    done <"$D/pids"
  fi
  mapfile -t -O "${#mirrors[@]}" mirrors < <(lab_rbd_mirrors)
  stop_pids ${mirrors[@]+"${mirrors[@]}"}
  stop_pids ${daemons[@]+"${daemons[@]}"}
  stop_pids ${mons[@]+"${mons[@]}"}
  if [ -f "$D/pids" ]; then mv -f "$D/pids" "$D/pids.stopped"; fi
  rm -f "$D/lab.json" "$D/env.sh" # tests read these to find a running lab
}

cmd_down() {
  D=$(lab_dir "${1:-}")
  [ -d "$D" ] || { log "no lab in $D"; return 0; }
  lock_lab
  local t0=$SECONDS
  stop_lab
  log "down ($D) in $((SECONDS - t0)) s"
}

cmd_purge() {
  D=$(lab_dir "${1:-}")
  [ -d "$D" ] || return 0
  [ -f "$D/site-a/site-a.conf" ] || [ -f "$D/pids" ] || [ -f "$D/pids.stopped" ] || [ -f "$D/.lock" ] ||
    die "$D does not look like a lab directory; not removing it"
  cmd_down "$D"
  rm -rf -- "$D"
  log "purged $D"
}

# ---------------------------------------------------------------- status

cmd_status() {
  D=$(lab_dir "${1:-}")
  [ -f "$D/pids" ] || { echo "down (no $D/pids)"; return 1; }
  local pid site label rc=0 kb total=0
  local -A per_site=()
  while read -r pid site label; do
    if pid_ok "$pid"; then
      kb=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
      total=$((total + kb))
      per_site[$site]=$((${per_site[$site]:-0} + kb))
      printf '%-7s %-12s %-7s up   rss %6d kB\n' "$site" "$label" "$pid" "$kb"
    else
      printf '%-7s %-12s %-7s DEAD\n' "$site" "$label" "$pid"
      rc=1
    fi
  done <"$D/pids"
  for pid in $(lab_rbd_mirrors); do
    grep -q "^$pid " "$D/pids" && continue
    kb=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
    total=$((total + kb))
    printf '%-7s %-12s %-7s up   rss %6d kB (not started by cluster.sh)\n' - rbd-mirror "$pid" "$kb"
  done
  for site in "${!per_site[@]}"; do echo "$site rss $((per_site[$site] / 1024)) MB"; done | sort
  echo "total rss $((total / 1024)) MB"
  local s
  for s in $(lab_sites); do
    echo "site-$s $(mon_host_of "$s"): $(ceph_s "$s" --to 5 health 2>&1 || echo unreachable)"
  done
  return $rc
}

# ---------------------------------------------------------------- selftest

cmd_selftest() {
  D=$(lab_dir "${1:-}")
  cluster_alive || die "lab in $D is not up"
  local t0=$SECONDS s img=selftest-$$ fail=0
  for s in $(lab_sites); do
    ceph_s "$s" -s >/dev/null || { log "site-$s: ceph -s failed"; fail=1; continue; }
    [ "$(ceph_s "$s" health)" = HEALTH_OK ] || { log "site-$s: $(ceph_s "$s" health detail)"; fail=1; }
    # Create and remove an empty image.
    if ! { rbd_s "$s" create "$POOL/$img-empty" --size 16M && rbd_s "$s" info "$POOL/$img-empty" >/dev/null &&
      rbd_s "$s" rm --no-progress "$POOL/$img-empty" >/dev/null; }; then
      log "site-$s: rbd create/info/rm failed"; fail=1; continue
    fi
    # Write random data through the CLI (import creates the image), read it
    # back, compare.
    local f=$D/selftest.$s.bin
    head -c $((8 << 20)) /dev/urandom >"$f"
    if ! rbd_s "$s" import --no-progress "$f" "$POOL/$img"; then
      log "site-$s: rbd import failed"; fail=1; continue
    fi
    local want got
    want=$(sha256sum <"$f" | cut -d' ' -f1)
    got=$(rbd_s "$s" export --no-progress "$POOL/$img" - | head -c $((8 << 20)) | sha256sum | cut -d' ' -f1)
    [ "$want" = "$got" ] || { log "site-$s: data read back differs"; fail=1; }
    rbd_s "$s" rm --no-progress "$POOL/$img" >/dev/null || { log "site-$s: rbd rm failed"; fail=1; }
    rm -f "$f"
    # The conf alone, plus an explicit key, is enough for librados (what the Go
    # tests do): no keyring path involved.
    if ! CONF=$(conf_of "$s") CLUSTER=site-$s KEY=$(admin_key_of "$s") POOL=$POOL timeout 20 "$PY" -c '
import os, rados, rbd
c = rados.Rados(conffile=os.environ["CONF"], clustername=os.environ["CLUSTER"],
                name="client.admin", conf={"key": os.environ["KEY"], "keyring": "/nonexistent"})
c.connect(timeout=10)
io = c.open_ioctx(os.environ["POOL"])
rbd.RBD().create(io, "selftest-py", 4 << 20)
with rbd.Image(io, "selftest-py") as im:
    im.write(b"x" * 4096, 0)
    assert im.read(0, 4096) == b"x" * 4096
rbd.RBD().remove(io, "selftest-py")
io.close(); c.shutdown()
'; then
      log "site-$s: librados with conf + explicit key failed"; fail=1
    fi
    [ "$fail" = 0 ] && log "site-$s ok"
  done
  if [ "$fail" = 0 ] && lab_mirror_running; then
    selftest_mirror || fail=1
  fi
  [ "$fail" = 0 ] || die "selftest FAILED"
  log "selftest passed in $((SECONDS - t0)) s"
}

lab_mirror_running() {
  local pid site label
  while read -r pid site label; do
    [ "$label" = rbd-mirror ] && pid_ok "$pid" && return 0
  done <"$D/pids"
  return 1
}

# selftest_mirror: with `mirror` set up, an image mirrored in snapshot mode
# reaches B with identical data, and disappears from B when disabled on A.
selftest_mirror() {
  local img=selftest-mirror-$$ f=$D/selftest.m.bin want t0=$SECONDS
  head -c $((8 << 20)) /dev/urandom >"$f"
  want=$(sha256sum <"$f" | cut -d' ' -f1)
  rbd_s a import --no-progress "$f" "$POOL/$img" || { log "mirror: import on A failed"; return 1; }
  rm -f "$f"
  rbd_s a mirror image enable "$POOL/$img" snapshot >/dev/null || { log "mirror: enable failed"; return 1; }
  local deadline=$((SECONDS + 40)) ok=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(rbd_s b export --no-progress "$POOL/$img" - 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$want" ]; then
      ok=1
      break
    fi
    sleep 0.5
  done
  if [ "$ok" = 1 ]; then
    log "mirror: B identical to A after $((SECONDS - t0)) s"
  else
    log "mirror: B's copy did not match A's within 40 s"
  fi
  rbd_s a mirror image disable "$POOL/$img" >/dev/null || ok=0
  deadline=$((SECONDS + 20))
  while rbd_s b info "$POOL/$img" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { log "mirror: B's copy still there 20 s after disable"; ok=0; break; }
    sleep 0.5
  done
  rbd_s a rm --no-progress "$POOL/$img" >/dev/null || ok=0
  [ "$ok" = 1 ] && log "mirror ok"
}

# ---------------------------------------------------------------- main

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
    install) cmd_install ;;
    up) cmd_up "$@" ;;
    mirror) cmd_mirror "$@" ;;
    unmirror) cmd_unmirror "$@" ;;
    env) cmd_env "$@" ;;
    status) cmd_status "$@" ;;
    selftest) cmd_selftest "$@" ;;
    down) cmd_down "$@" ;;
    purge) cmd_purge "$@" ;;
    *) usage ;;
  esac
}

main "$@"
