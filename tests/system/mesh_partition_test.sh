#!/usr/bin/env bash
# System test (root): the peer mesh under a partition that leaves NATS alone. 3 `hacoord daemon`s
# in network namespaces on a bridge (scripts/lab.sh), nats-server -js in the hub namespace, mutual
# TLS mesh between the hosts' eth0 addresses (certificates from `hacoord certs`; pingIntervalMs 200,
# suspectAfterMs 600, deadAfterMs 1000, refreshMs 1000). Proves the rule: "A node cut from its peers
# (but not from NATS) sees them as dead with reason `unreachable` within the configured dead time,
# and comes back when the cut heals":
#   - h1 is cut from h2 and h3 only (blackhole routes to 192.0.2.12/32 and 192.0.2.13/32 in h1's
#     namespace; 192.0.2.1, NATS, stays reachable);
#   - within deadAfterMs + slack (DEAD_BOUND below) h1 sees h2 and h3 dead/unreachable, and h2 and
#     h3 see h1 dead/unreachable ("unreachable", not "departed": every members record stays fresh
#     in NATS, which is what tells silence on the mesh apart from a node that left);
#   - for HOLD ms after that nothing flaps back, and h1's daemon stays connected to NATS throughout
#     (it answers `hacoord health h1 --json` over NATS with natsConnected true);
#   - once the routes are gone every host sees every other alive again within HEAL_BOUND.
# Every view is the daemon's own (`hacoord peers --json` asks that host's daemon over NATS); every
# wait is a bounded poll. The measured times are printed. On exit the lab is torn down and the test
# fails if any of its namespaces is left.
# Usage: mesh_partition_test.sh HACOORD_BINARY   (exit 77 = skipped: not root / no netns; with
# HACOORD_REQUIRE_SYSTEM_TESTS=1 that is a failure instead, so CI cannot pass by skipping)
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../scripts/lab.sh
source "$HERE/../../scripts/lab.sh"

HACOORD=${1:?usage: mesh_partition_test.sh HACOORD_BINARY}
[ -x "$HACOORD" ] || { echo "FAIL: $HACOORD is not executable"; exit 1; }
if ! why=$(lab_available); then
  if [ "${HACOORD_REQUIRE_SYSTEM_TESTS:-0}" = 1 ]; then
    echo "FAIL: HACOORD_REQUIRE_SYSTEM_TESTS=1 but this system test cannot run: $why"
    exit 1
  fi
  echo "SKIP: system test needs root with network namespaces, veth and bridge: $why"
  exit 77
fi

# The mesh timings lab_mesh_section writes into every host's config.
PING=200
DEAD=1000
# Dead detection, from the cut: h2/h3 hear nothing from h1 from the cut on, but h1 can still get
# frames h2/h3 sent until their TCP stops sending new data (see cut_peers; ~500 ms seen in this
# lab), then deadAfterMs of silence, up to one mesh tick (100 ms) until the tick notices, plus the
# CLI's round trip to the daemon over NATS (~30 ms per poll here) and the 10 ms polling:
# 3000 ms covers it with room. The daemons' own log lines are printed too (exact, report only).
DEAD_BOUND=3000
# After detection the cut stays for HOLD ms: longer than the higher id's redial delay (2 s,
# higher_dial_delay) so a redial attempt of h2/h3 toward h1 happens inside the cut.
HOLD=3000
# Heal: the lower id dials (h1 < h2 < h3). While cut, h1's dials to h2/h3 fail at once (connect()
# to a blackhole route), and MeshCore::onDialed doubles the backoff from backoff_min 100 ms up to
# backoff_max 5 s with +-20% jitter, so h1's next attempt comes at most 5000 * 1.2 = 6000 ms after
# the heal, whatever the backoff had reached. Then a TCP + TLS handshake and HELLO on a bridge
# (milliseconds; the adopted link's HELLO sets alive, and the peer's HELLO back does on its side),
# plus the CLI's NATS round trip and polling: 8000 ms.
HEAL_BOUND=8000

lab_init "$HACOORD" 3
FAILED=0
on_exit() {
  local rc=$?
  if [ "$FAILED" -ne 0 ]; then
    for h in "${LAB_HOSTS[@]}"; do
      echo "---- $h peers: $(view "$h")"
      echo "---- $h.log (tail) ----"; tail -25 "$LAB_DIR/$h.log" 2>/dev/null
    done
    echo "---- routes in h1's namespace ----"; ip -n "$(lab_ns h1)" route show 2>/dev/null
  fi
  lab_cleanup
  # The lab must leave nothing behind: no namespace of this run (daemons and nats-server were
  # killed by PID and reaped in lab_cleanup).
  local left
  left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${LAB_P}" | tr '\n' ' ')
  if [ -n "$left" ]; then
    echo "FAIL: lab_cleanup left namespaces behind: $left"
    exit 1
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

fail() { FAILED=1; echo "FAIL: $*"; exit 1; }

# view HOST: HOST's daemon's peers as "h2=alive h3=dead/unreachable" (in its order), or "?(...)"
# when the daemon did not answer. Parsed in bash (`peers --json` is one line of flat peer objects
# {"id":...,"state":...,"reason":...,...}): a python3 per poll costs ~300 ms on a busy 2-core box,
# which would be most of what the polls measure.
view() {
  local out obj id state reason res=() ws='[[:space:]]*'
  out=$(lab_host_cli "$1" peers --json 2>&1) || { echo "?(${out//$'\n'/ })"; return; }
  [[ $out =~ \"peers\"$ws:$ws\[(.*)\] ]] || { echo "?(unparsable: ${out:0:200})"; return; }
  out=${BASH_REMATCH[1]}
  while [[ $out =~ \{([^{}]*)\} ]]; do
    obj=${BASH_REMATCH[1]}
    out=${out#*"${BASH_REMATCH[0]}"}
    id='?' state='?' reason=''
    [[ $obj =~ \"id\"$ws:$ws\"([^\"]*)\" ]] && id=${BASH_REMATCH[1]}
    [[ $obj =~ \"state\"$ws:$ws\"([^\"]*)\" ]] && state=${BASH_REMATCH[1]}
    [[ $obj =~ \"reason\"$ws:$ws\"([^\"]*)\" ]] && reason=${BASH_REMATCH[1]}
    res+=("$id=$state${reason:+/$reason}")
  done
  echo "${res[*]}"
}

# sees HOST WANT PEER...: HOST's daemon shows each PEER as exactly WANT ("alive" or
# "dead/unreachable"). The last view is kept in LAST for the FAIL lines.
LAST=""
sees() {
  local host=$1 want=$2 p
  shift 2
  LAST=$(view "$host")
  for p in "$@"; do
    [[ " $LAST " == *" $p=$want "* ]] || return 1
  done
}

# nats_ok HOST: HOST's daemon answers over NATS and says it is connected to NATS.
nats_ok() {
  local out
  out=$(lab_host_cli "$1" health "$1" --json 2>&1)
  [[ $out =~ \"natsConnected\"[[:space:]]*:[[:space:]]*true ]]
}

others() { local h; for h in "${LAB_HOSTS[@]}"; do [ "$h" = "$1" ] || echo "$h"; done; }

all_alive() {
  local h
  for h in "${LAB_HOSTS[@]}"; do
    # shellcheck disable=SC2046
    sees "$h" alive $(others "$h") || { LAST="$h: $LAST"; return 1; }
  done
}

# cut_peers add|del: h1 loses h2 and h3, keeps the hub (NATS). A blackhole route only drops h1's
# outgoing packets, which cuts TCP both ways: h1's SYNs, data and ACKs toward h2/h3 are dropped
# (new connects from h1 fail at once), and h2/h3's SYNs to h1 never get a SYN-ACK back. On an
# established link, segments from h2/h3 still arrive at h1 but are never acknowledged, so their TCP
# stops sending new data once its retransmission timer fires (a few hundred ms; cwnd falls to one
# segment) and from then on only retransmits bytes h1 already has:
# from then on h1's mesh hears nothing new, and h2/h3 hear nothing at all.
cut_peers() {
  local ns ip
  ns=$(lab_ns h1)
  for ip in 192.0.2.12 192.0.2.13; do ip -n "$ns" route "$1" blackhole "$ip/32" || return 1; done
}

# ---- setup: certificates, lab, daemons, full mesh ----------------------------------------------
"$HACOORD" certs init-ca --dir "$LAB_DIR/ca" >/dev/null || fail "certs init-ca"
for h in "${LAB_HOSTS[@]}"; do
  "$HACOORD" certs issue --dir "$LAB_DIR/ca" --cluster lab --node "$h" --out "$LAB_DIR/mesh-$h" >/dev/null ||
    fail "certs issue $h"
done
# shellcheck disable=SC2034
LAB_MESH_DIR=$LAB_DIR  # read by lab_write_config (lab.sh): mesh sections in the configs
lab_up || fail "lab setup"
for h in "${LAB_HOSTS[@]}"; do lab_start "$h"; done

echo "== full mesh"
t0=$(lab_now_ms)
lab_wait_for 20000 all_alive || fail "mesh: expected every host to see the 2 others alive within 20000 ms, saw $LAST"
echo "  every host sees the others alive after $(( $(lab_now_ms) - t0 )) ms"
for h in "${LAB_HOSTS[@]}"; do nats_ok "$h" || fail "$h's daemon does not report natsConnected true"; done
# A few ping intervals of a steady mesh, so the links carry RTT samples and no host is still
# settling when the cut comes.
lab_holds_for $((5 * PING)) all_alive || fail "mesh: not steady: $LAST"

# ---- the cut: h1 from h2 and h3, not from NATS ------------------------------------------------
echo "== cut: blackhole 192.0.2.12/32 and 192.0.2.13/32 in h1's namespace (192.0.2.1 reachable)"
cut_peers add || fail "cut: route add"
tc=$(lab_now_ms)
ip netns exec "$(lab_ns h1)" bash -c "exec 3<>/dev/tcp/$LAB_HUB_IP/4222" 2>/dev/null ||
  fail "cut: h1 cannot reach NATS at $LAB_HUB_IP:4222 (the cut must leave it)"

# detect HOST PEER...: polls HOST's view until it shows each PEER dead/unreachable, at most until
# DEAD_BOUND after the cut; writes to $LAB_DIR/detect-HOST the ms since the cut at the first poll
# that showed it (an upper bound of the daemon's detection time: it includes the CLI's round trip),
# or the last view it saw. The three hosts are polled at once, so no host's figure waits for another's.
detect() {
  local host=$1
  shift
  if lab_wait_for $((tc + DEAD_BOUND - $(lab_now_ms))) sees "$host" dead/unreachable "$@"; then
    echo $(( $(lab_now_ms) - tc )) >"$LAB_DIR/detect-$host"
  else
    echo "saw '$LAST' after $(( $(lab_now_ms) - tc )) ms" >"$LAB_DIR/detect-$host"
  fi
}
detect h1 h2 h3 & p1=$!
detect h2 h1 & p2=$!
detect h3 h1 & p3=$!
wait "$p1" "$p2" "$p3"
declare -A D
for h in h1 h2 h3; do
  D[$h]=$(cat "$LAB_DIR/detect-$h" 2>/dev/null)
  [[ "${D[$h]}" =~ ^[0-9]+$ ]] ||
    fail "cut: expected $h to see its cut peers ($( [ "$h" = h1 ] && echo h2 h3 || echo h1)) dead/unreachable within $DEAD_BOUND ms of the cut (deadAfterMs $DEAD): ${D[$h]:-no result}"
done
d1=${D[h1]} d2=${D[h2]} d3=${D[h3]}
# The views' states of the pairs that were not cut.
sees h2 alive h3 || fail "cut: expected h2 to keep h3 alive, saw '$LAST'"
sees h3 alive h2 || fail "cut: expected h3 to keep h2 alive, saw '$LAST'"
nats_ok h1 || fail "cut: h1's daemon did not answer over NATS with natsConnected true"
echo "  dead/unreachable seen (first poll, ms after the cut; bound $DEAD_BOUND): h1 sees h2,h3: $d1  h2 sees h1: $d2  h3 sees h1: $d3"
# For the report only (the assertions above are on the daemons' own answers): when each daemon
# logged the peer dead, in ms after the cut, and the silence it measured.
log_dead() {  # HOST PEER: "<ms after the cut>ms (silence <n> ms)" from HOST's log, or "?"
  local line ts ms
  line=$(grep -m1 "mesh: peer $2 dead: nothing heard for" "$LAB_DIR/$1.log" 2>/dev/null) || { echo "?"; return; }
  ts=$(date -d "$(cut -d' ' -f1 <<<"$line")" +%s%3N 2>/dev/null) || { echo "?"; return; }
  ms=$(sed -n 's/.*nothing heard for \([0-9]*\) ms.*/\1/p' <<<"$line")
  echo "$((ts - tc))ms (silence ${ms:-?} ms)"
}
echo "  per the daemons' logs: h1: h2 $(log_dead h1 h2), h3 $(log_dead h1 h3); h2: h1 $(log_dead h2 h1); h3: h1 $(log_dead h3 h1)"

still_cut() {
  sees h1 dead/unreachable h2 h3 || { LAST="h1: $LAST"; return 1; }
  sees h2 dead/unreachable h1 || { LAST="h2: $LAST"; return 1; }
  sees h3 dead/unreachable h1 || { LAST="h3: $LAST"; return 1; }
  nats_ok h1 || { LAST="h1's daemon did not answer over NATS with natsConnected true"; return 1; }
}
lab_holds_for "$HOLD" still_cut ||
  fail "cut: expected the cut pairs to stay dead/unreachable and h1 on NATS for $HOLD ms, saw $LAST"
echo "  for $HOLD ms: still dead/unreachable both ways, h1 answering over NATS (natsConnected true)"

# ---- heal ----------------------------------------------------------------------------------------
echo "== heal: blackhole routes removed"
cut_peers del || fail "heal: route del"
th=$(lab_now_ms)
lab_wait_for "$HEAL_BOUND" all_alive ||
  fail "heal: expected every host to see every other alive within $HEAL_BOUND ms of the heal, saw $LAST after $(( $(lab_now_ms) - th )) ms"
heal=$(( $(lab_now_ms) - th ))
echo "  every host sees every other alive $heal ms after the heal (bound $HEAL_BOUND)"
lab_holds_for $((5 * PING)) all_alive || fail "heal: not steady after the heal: $LAST"
for h in "${LAB_HOSTS[@]}"; do nats_ok "$h" || fail "heal: $h's daemon does not report natsConnected true"; done

echo "PASS: cut from peers but not NATS: dead/unreachable after h1 ${d1} h2 ${d2} h3 ${d3} ms (deadAfterMs $DEAD, bound $DEAD_BOUND); healed after ${heal} ms (bound $HEAL_BOUND)"
