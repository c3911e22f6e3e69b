#!/usr/bin/env bash
# System test (root): 3 `hacoord daemon`s in network namespaces on a bridge, nats-server -js in a hub
# namespace, a client pinging the VIP every 10 ms. Faults: kill -9, SIGTERM, demote, promote,
# SIGSTOP/SIGCONT, link down, leader cut off from NATS only (blackhole route), nats-server restart
# (shorter and longer than the TTL), nats-server losing the lease bucket, the bucket deleted live.
# Throughout, every host's address events (`ip -ts monitor`, real-time priority) give exact holding intervals and the test
# fails if two ever overlap; a poller also samples every 20 ms (holder changes for the report). After each scenario: exactly the leader (per `hacoord status --json`) holds the VIP
# and the client's neighbour entry is its MAC.
# Also throughout, the client sends an ARP who-has for the VIP every 20 ms and the test fails if one
# request is answered by two MACs.
# Ordering against the lease records (DESIGN §3 "Planned handover", §4 "Order"): a KV watcher in
# the hub (hacoord_test_kvwatch) logs every revision of the lease key with the NATS server's stamp;
# the address events carry the same host clock. For SIGTERM, demote and promote the old leader's
# VIP delete must precede its vacant record and the new leader's VIP add must follow its winning
# write (margins in the report); after every scenario, no host's VIP add may precede the record
# naming it holder, and no takeover of a lease that was not handed over may come sooner than the
# replaced record's leaseMs (§3 "Follower takeover"). A leader cut off, frozen or killed must lose
# its VIP within TTL - margin of the fault (§3 "Leader self-fencing", §4 kernel lifetime). After
# each convergence the records and address events must show no change for a TTL (exact, not sampled).
# Usage: vip_failover_test.sh HACOORD_BINARY KVWATCH_BINARY   (exit 77 = skipped: not root / no
# netns; with HACOORD_REQUIRE_SYSTEM_TESTS=1 that is a failure instead, so CI cannot pass by skipping)
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../scripts/lab.sh
source "$HERE/../../scripts/lab.sh"

HACOORD=${1:?usage: vip_failover_test.sh HACOORD_BINARY KVWATCH_BINARY}
KVWATCH=${2:?usage: vip_failover_test.sh HACOORD_BINARY KVWATCH_BINARY}
[ -x "$HACOORD" ] || { echo "FAIL: $HACOORD is not executable"; exit 1; }
[ -x "$KVWATCH" ] || { echo "FAIL: $KVWATCH is not executable"; exit 1; }
if ! why=$(lab_available); then
  if [ "${HACOORD_REQUIRE_SYSTEM_TESTS:-0}" = 1 ]; then
    echo "FAIL: HACOORD_REQUIRE_SYSTEM_TESTS=1 but this system test cannot run: $why"
    exit 1
  fi
  echo "SKIP: system test needs root with network namespaces, veth and bridge: $why"
  exit 77
fi

TTL=2000
RENEW=500
MARGIN=200
# DESIGN §3 "Leader self-fencing": the leader's lease ends at the send time of its last write known
# committed + TTL - margin. Bounds below are taken from there, with these configured values.
FENCE=$((TTL - MARGIN))
lab_init "$HACOORD" 3 "$TTL" "$RENEW" "$MARGIN"
FAILED=0
on_exit() {
  if [ "$FAILED" -ne 0 ]; then
    echo "---- VIP holder changes (ms holders) ----"; cat "$LAB_DIR/vip.log" 2>/dev/null | tail -40
    echo "---- ARP answer changes (ms MACs) ----"; cat "$LAB_DIR/arp.log" 2>/dev/null | tail -20
    echo "---- lease records (server ns, rev, op, src, value) ----"; tail -30 "$LAB_DIR/kv.log" 2>/dev/null
    tail -5 "$LAB_DIR/kvwatch.err" 2>/dev/null
    for h in "${LAB_HOSTS[@]}"; do echo "---- $h.log (tail) ----"; tail -25 "$LAB_DIR/$h.log" 2>/dev/null; done
  fi
  lab_cleanup
}
trap on_exit EXIT
trap 'exit 130' INT TERM

fail() { FAILED=1; echo "FAIL: $*"; exit 1; }
SUMMARY=()

lab_up || fail "lab setup"
# The recorders first, so the first election's add and winning write are in their logs.
lab_start_addrmon
lab_start_kvwatch "$KVWATCH"
lab_wait_for 10000 grep -q "^# .* connected" "$LAB_DIR/kv.log" || fail "KV watcher did not connect"
for h in "${LAB_HOSTS[@]}"; do lab_start "$h"; done
lab_start_vippoll "$LAB_DIR/vip.log"
lab_start_pinger "$LAB_DIR/ping.log"
lab_start_arpwatch "$LAB_DIR/arp.log"

no_double() {
  # Exact: from the kernel's add/delete events of every host (the 20 ms samples below would miss
  # the 1-3 ms overlap a handover-ordering bug makes).
  local overlaps
  if ! overlaps=$(lab_overlaps); then
    echo "$overlaps" | head -5
    fail "two hosts held the VIP at the same time per the kernel's address events ($1)"
  fi
  if grep -q DOUBLE "$LAB_DIR/vip.log"; then
    grep DOUBLE "$LAB_DIR/vip.log" | head -5
    fail "two hosts held the VIP at the same sample ($1)"
  fi
  if grep -q DOUBLE "$LAB_DIR/arp.log"; then
    grep DOUBLE "$LAB_DIR/arp.log" | head -5
    fail "two MACs answered one ARP request for the VIP ($1)"
  fi
  # DESIGN §4 "on winning, lease first, VIP after": every add of every host so far came after the
  # lease record naming that host holder; DESIGN §3 "Follower takeover": every takeover of a lease
  # not handed over came at least its leaseMs after the record it replaced (exact: server stamps
  # against address events).
  local order
  if ! order=$(lab_order); then
    echo "$order" | head -5
    fail "VIP add or takeover out of order with the lease records ($1)"
  fi
  echo "$order" | grep UNVERIFIED | head -3
  kill -0 "$LAB_KVWATCH_PID" 2>/dev/null || fail "KV watcher died"
  kill -0 "$LAB_ARPWATCH_PID" 2>/dev/null || fail "ARP watcher died"
  kill -0 "$LAB_POLL_PID" 2>/dev/null || fail "VIP poller died"
  kill -0 "$LAB_PINGER_PID" 2>/dev/null || fail "pinger died"
}

fresh_reply() {  # the client got a reply in the last 300 ms
  local last
  last=$(tail -n1 "$LAB_DIR/ping.log" 2>/dev/null | cut -d' ' -f1)
  [ -n "$last" ] && [ $(( $(lab_now_ms) - last )) -lt 300 ]
}

# converged [NOT_NODE]: a leader (not NOT_NODE) per status; it alone holds the VIP; the client's
# neighbour entry for the VIP is its MAC; the client gets replies. Sets LEADER.
converged() {
  LEADER=$(lab_leader)
  [ -n "$LEADER" ] && [ "$LEADER" != "${1:-}" ] || return 1
  [ "$(lab_vip_holders)" = "$LEADER" ] || return 1
  [ "$(lab_client_vip_mac)" = "$(lab_mac "$LEADER")" ] || return 1
  fresh_reply
}

# settle NAME [NOT_NODE]: wait for convergence, then for one TTL nothing may move: only renewals of
# the leader's epoch, the VIP on the leader without a break, on nobody else (exact, from the lease
# records and address events, checked every poll: one good sample proves nothing about stability).
# A TTL: a leader whose renewals do not commit fences itself TTL - margin after its winning write.
settle() {
  local deadline=20000
  lab_wait_for "$deadline" converged "${2:-}" ||
    fail "$1: no convergence within ${deadline} ms (leader='$LEADER' holders='$(lab_vip_holders)' client mac='$(lab_client_vip_mac)')"
  local l=$LEADER ts
  ts=$(lab_now_ms)
  lab_holds_for "$TTL" lab_stable "$ts" "$l" >/dev/null ||
    fail "$1: not stable for a TTL after convergence: $(lab_stable "$ts" "$l")"
  lab_wait_for 5000 converged "${2:-}" && [ "$LEADER" = "$l" ] || fail "$1: leader not $l after a TTL"
}

# fenced_by NAME T_REF_MS HOST: HOST's VIP went off (exact, its address events) no later than
# T_REF_MS + TTL - margin. T_REF_MS is taken after the fault took effect, so every write HOST got
# committed was sent before it: its own deadline (DESIGN §3) and the kernel lifetime (§4: ends
# before that deadline, set on each committed renewal) both fall within the bound. Prints the ms
# after T_REF_MS, or the problem (exit 1): use as `x=$(fenced_by ...) || fail "$x"`.
fenced_by() {
  local off_us
  off_us=$(lab_vip_edge off "$2" "$3")
  [ -n "$off_us" ] || { echo "$1: $3 never removed the VIP"; return 1; }
  local after_us=$((off_us - $2 * 1000))
  if [ "$after_us" -gt $((FENCE * 1000)) ]; then
    echo "$1: $3 kept the VIP $((after_us / 1000)) ms after the fault (> TTL - margin = $FENCE ms)"
    return 1
  fi
  echo $((after_us / 1000))
}

healthy() { lab_cli health "$1" >/dev/null 2>&1; }
wait_healthy() { lab_wait_for 20000 healthy "$1" || fail "$2: $1 not healthy again"; }

# vip_off_after T_MS HOST / vip_on_after T_MS HOST: wall ms at which HOST's VIP went off (its
# holding interval covering T_MS, or the next, ended) / on (first add at or after T_MS), from its
# address events; nothing if it did not.
vip_off_after() { local us; us=$(lab_vip_edge off "$1" "$2"); [ -z "$us" ] || echo $((us / 1000)); }
vip_on_after() { local us; us=$(lab_vip_edge on "$1" "$2"); [ -z "$us" ] || echo $((us / 1000)); }

report() {  # NAME T0 T_END OLD NEW NOTE
  local name=$1 t0=$2 t1=$3 old=$4 new=$5 note=${6:-}
  local gap off on
  gap=$(lab_gap "$LAB_DIR/ping.log" "$t0" "$t1" | cut -d' ' -f1)
  off=$(vip_off_after "$t0" "$old")
  on=$(vip_on_after "$t0" "$new")
  local offms="?" onms="?"
  [ -n "$off" ] && offms=$((off - t0))
  [ -n "$on" ] && onms=$((on - t0))
  local line
  line=$(printf '%-22s %-3s -> %-3s  client outage %5s ms   VIP off old %5s ms, on new %5s ms  %s' \
    "$name" "$old" "$new" "$gap" "$offms" "$onms" "$note")
  echo "  $line"
  SUMMARY+=("$line")
}

# ---- 1. initial election ----------------------------------------------------------------------
echo "== scenario: initial election"
t0=$(lab_now_ms)
settle initial
[ "$(lab_vip_holders)" = "$LEADER" ] || fail "initial: holders"
no_double initial
echo "  leader $LEADER holds the VIP, client neighbour $(lab_client_vip_mac) = $LEADER eth0 MAC after $(( $(lab_now_ms) - t0 )) ms"
for h in "${LAB_HOSTS[@]}"; do wait_healthy "$h" initial; done

# ---- 2. kill -9 of the leader daemon (host stays up) --------------------------------------------
echo "== scenario: kill -9 of the leader daemon"
old=$LEADER
t0=$(lab_now_ms)
lab_kill "$old"
tk=$(lab_now_ms)
settle crash "$old"
t1=$(lab_now_ms)
no_double crash
gone=$(fenced_by crash "$tk" "$old") || fail "$gone"
report "kill -9" "$t0" "$t1" "$old" "$LEADER" "(kernel lifetime removed the VIP from the dead daemon's host $gone ms after the kill, bound TTL-margin $FENCE; $(lab_takeover "$t0" "$LEADER"))"
lab_start "$old"; wait_healthy "$old" crash
settle crash-rejoin; no_double crash-rejoin

# ---- 3. SIGTERM of the leader: planned handover -----------------------------------------------
echo "== scenario: SIGTERM of the leader (planned handover)"
old=$LEADER
t0=$(lab_now_ms)
kill -TERM "${LAB_PID[$old]}"
settle sigterm "$old"
t1=$(lab_now_ms)
no_double sigterm
order=$(lab_handover "$t0" "$old" "$LEADER") || fail "sigterm: $order"
report "SIGTERM" "$t0" "$t1" "$old" "$LEADER" "($order)"
lab_wait_for 10000 bash -c "! kill -0 ${LAB_PID[$old]} 2>/dev/null" || fail "sigterm: $old did not exit"
lab_reap "$old"
lab_start "$old"; wait_healthy "$old" sigterm
settle sigterm-rejoin; no_double sigterm-rejoin

# ---- 4. hacoord demote -------------------------------------------------------------------------
echo "== scenario: hacoord demote (from the hub namespace)"
old=$LEADER
t0=$(lab_now_ms)
# --force: the operator's path, exempt from the rate limit (one handover per cooldown across the
# cluster): this leader may have taken over in the SIGTERM handover barely a cooldown ago.
lab_cli demote --force >/dev/null || fail "demote: CLI failed"
settle demote "$old"
t1=$(lab_now_ms)
no_double demote
order=$(lab_handover "$t0" "$old" "$LEADER") || fail "demote: $order"
report "demote" "$t0" "$t1" "$old" "$LEADER" "($order)"

# ---- 5. hacoord promote h3 -------------------------------------------------------------------
echo "== scenario: hacoord promote"
for target in h1 h3; do
  [ "$LEADER" = "$target" ] && continue  # promote h3; via h1 first if h3 leads already
  old=$LEADER
  t0=$(lab_now_ms)
  lab_cli promote "$target" --force >/dev/null || fail "promote $target: CLI failed"
  settle "promote $target" "$old"
  t1=$(lab_now_ms)
  [ "$LEADER" = "$target" ] || fail "promote $target: leader is $LEADER"
  no_double "promote $target"
  order=$(lab_handover "$t0" "$old" "$LEADER") || fail "promote $target: $order"
  report "promote $target" "$t0" "$t1" "$old" "$LEADER" "($order)"
done

# ---- 6. SIGSTOP past the TTL, then SIGCONT -----------------------------------------------------
echo "== scenario: SIGSTOP of the leader past its TTL, then SIGCONT"
old=$LEADER
t0=$(lab_now_ms)
lab_sigstop "$old"
tk=$(lab_now_ms)
settle sigstop "$old"
t1=$(lab_now_ms)
no_double sigstop  # exact: the stopped host's VIP interval ended before the new leader's began
gone=$(fenced_by sigstop "$tk" "$old") || fail "$gone"
report "SIGSTOP" "$t0" "$t1" "$old" "$LEADER" "(stopped host's VIP expired $gone ms after the stop, bound TTL-margin $FENCE, before the new one came; $(lab_takeover "$t0" "$LEADER"))"
new=$LEADER
tc=$(lab_now_ms)
lab_sigcont "$old"
wait_healthy "$old" sigcont
# For 3 s after SIGCONT (>= one TTL), the resumed node must not take the lease or re-add the VIP:
# exact, from the lease records and every host's address events since tc.
lab_holds_for $((tc + 3000 - $(lab_now_ms))) lab_stable "$tc" "$new" >/dev/null ||
  fail "sigcont: $(lab_stable "$tc" "$new")"
settle sigcont; [ "$LEADER" = "$new" ] || fail "sigcont: leadership moved back to $LEADER"
no_double sigcont
echo "  after SIGCONT $old stayed a follower; $new still alone holds the VIP"

# ---- 7. leader link down -----------------------------------------------------------------------
echo "== scenario: link down on the leader's host"
old=$LEADER
t0=$(lab_now_ms)
ip -n "$(lab_ns "$old")" link set eth0 down
tk=$(lab_now_ms)
settle linkdown "$old"
t1=$(lab_now_ms)
no_double linkdown
gone=$(fenced_by linkdown "$tk" "$old") || fail "$gone"
report "link down" "$t0" "$t1" "$old" "$LEADER" "(VIP off $gone ms after the cut, bound TTL-margin $FENCE; $(lab_takeover "$t0" "$LEADER"))"
new=$LEADER
ip -n "$(lab_ns "$old")" link set eth0 up
wait_healthy "$old" link-up
settle link-up; [ "$LEADER" = "$new" ] || fail "link-up: leadership moved to $LEADER"
no_double link-up

# ---- 8. leader cut off from NATS (blackhole route), client still reaches it --------------------
echo "== scenario: leader cut off from NATS only (blackhole 192.0.2.1/32 in its namespace)"
old=$LEADER
oldns=$(lab_ns "$old")
t0=$(lab_now_ms)
ip -n "$oldns" route add blackhole "$LAB_HUB_IP/32" || fail "blackhole: route add"
tk=$(lab_now_ms)  # every write the leader got committed was sent before this
settle blackhole "$old"
t1=$(lab_now_ms)
no_double blackhole  # exact: the cut-off leader's VIP interval ended before the new leader's began
# DESIGN §3: its lease ends TTL - margin after the send of its last committed write (before tk), and
# it drops the VIP then even with NATS unreachable (the kernel lifetime, §4, ends earlier still).
gone=$(fenced_by blackhole "$tk" "$old") || fail "$gone"
off=$(vip_off_after "$tk" "$old")
on=$(vip_on_after "$tk" "$LEADER")
# Until it fenced, the cut-off leader still served the client (it only lost NATS, not the LAN).
served=$(lab_gap "$LAB_DIR/ping.log" "$t0" "$off" | cut -d' ' -f2)
[ $((off - t0)) -lt 200 ] || [ "$served" -gt 0 ] || fail "blackhole: client got no reply from $old between the cut and its fence"
report "NATS blackhole" "$t0" "$t1" "$old" "$LEADER" "(cut-off leader answered $served pings, self-fenced $gone ms after the cut (bound TTL-margin $FENCE), $((on - off)) ms before the takeover; $(lab_takeover "$t0" "$LEADER"))"
new=$LEADER
tc=$(lab_now_ms)
ip -n "$oldns" route del blackhole "$LAB_HUB_IP/32" || fail "blackhole: route del"
wait_healthy "$old" unblackhole
# For 3 s after the route came back, the old leader must not take the lease or re-add the VIP.
lab_holds_for $((tc + 3000 - $(lab_now_ms))) lab_stable "$tc" "$new" >/dev/null ||
  fail "unblackhole: $(lab_stable "$tc" "$new")"
settle unblackhole; [ "$LEADER" = "$new" ] || fail "unblackhole: leadership moved to $LEADER"
no_double unblackhole
echo "  after the route came back $old rejoined as a follower (healthy) and did not re-add the VIP"

# ---- 9./10. nats-server restart: down shorter, then longer than the TTL --------------------------
nats_restart() {  # NAME DOWN_S
  local name=$1 down=$2 old t0 ts tr t1 off on note note_fence=""
  echo "== scenario: nats-server restart, down ${down} s (TTL $((TTL / 1000)) s)"
  old=$LEADER
  t0=$(lab_now_ms)
  lab_nats_stop
  ts=$(lab_now_ms)
  sleep "$down"  # the fault's duration, not a wait for a condition
  lab_nats_start || fail "$name: nats-server did not come back"
  tr=$(lab_now_ms)
  settle "$name"
  t1=$(lab_now_ms)
  no_double "$name"
  if [ $((tr - ts)) -gt "$FENCE" ]; then
    # NATS gone for longer than TTL - margin: the leader's lease ran out while it could not renew.
    local gone
    gone=$(fenced_by "$name" "$ts" "$old") || fail "$gone"
    note_fence=", VIP off $gone ms after the stop (bound TTL-margin $FENCE)"
  fi
  off=$(vip_off_after "$t0" "$old")
  if [ -z "$off" ] || [ "$off" -gt "$t1" ]; then
    [ "$LEADER" = "$old" ] || fail "$name: leadership moved to $LEADER but $old never dropped the VIP"
    note="(kept the lease; nats down $((tr - ts)) ms)"
  else
    on=$(vip_on_after "$off" "$LEADER")
    [ -n "$on" ] || fail "$name: $LEADER never added the VIP after $old dropped it"
    note="(self-fenced: VIP off $((off - t0)) ms after stop$note_fence, nats down $((tr - ts)) ms, leader $LEADER VIP on $((on - t0)) ms)"
  fi
  report "nats restart ${down}s" "$t0" "$t1" "$old" "$LEADER" "$note"
  for h in "${LAB_HOSTS[@]}"; do wait_healthy "$h" "$name"; done
  settle "$name-healthy"; no_double "$name-healthy"
}
nats_restart nats-short 1
nats_restart nats-long 4

# bucket_gone NAME LABEL FAULT...: runs FAULT (the bucket goes away), then: one leader again with
# the VIP, never two holders, nobody took the re-created bucket before a lease had passed (lab_order
# on the first record of the new generation), and an epoch above every epoch seen before (the
# nodes' state files): revisions restart at 1 and the leader's record is gone, which followers
# must take as "holder unknown", never "vacant".
bucket_gone() {
  local name=$1 label=$2 old old_epoch new_epoch t0 t1
  shift 2
  old=$LEADER
  old_epoch=$(lab_epoch)
  [ -n "$old_epoch" ] || fail "$name: cannot read the epoch before the fault"
  t0=$(lab_now_ms)
  "$@" || fail "$name: the fault itself failed"
  settle "$name"
  t1=$(lab_now_ms)
  no_double "$name"
  new_epoch=$(lab_epoch)
  [ -n "$new_epoch" ] && [ "$new_epoch" -gt "$old_epoch" ] ||
    fail "$name: epoch went from $old_epoch to '$new_epoch' (must rise)"
  report "$label" "$t0" "$t1" "$old" "$LEADER" "(epoch $old_epoch -> $new_epoch)"
}

# ---- 11. the lease bucket is lost: nats-server restarts without its stream --------------------------
wipe_stream() {
  lab_nats_stop
  local stream_dir
  stream_dir=$(find "$LAB_DIR/js" -type d -name "KV_HACOORD_lab" | head -1)
  [ -n "$stream_dir" ] || { echo "no stream directory KV_HACOORD_lab under $LAB_DIR/js"; return 1; }
  rm -rf "$stream_dir"
  lab_nats_start
}
echo "== scenario: the lease bucket is lost (nats-server restarts with the stream wiped)"
bucket_gone bucket-lost "bucket lost" wipe_stream
for h in "${LAB_HOSTS[@]}"; do wait_healthy "$h" bucket-lost; done
settle bucket-lost-healthy; no_double bucket-lost-healthy

# ---- 12. the lease bucket is deleted while everything runs (an operator's `nats kv del`) ----------
# nats-server stays up: the leader's next renewal finds no base and it stops; the followers (and
# the KV watcher) find the bucket gone, and someone re-creates it empty.
echo "== scenario: the lease bucket is deleted live (nats kv del)"
bucket_gone bucket-deleted "bucket deleted" \
  ip netns exec "$(lab_ns hub)" "$KVWATCH" --delete-bucket "nats://$LAB_HUB_IP:4222" HACOORD_lab

echo
echo "== outage figures (TTL ${TTL} ms, renew ${RENEW} ms, client pings every 10 ms)"
for l in "${SUMMARY[@]}"; do echo "  $l"; done
echo "ARP: $(wc -l <"$LAB_DIR/arp.log") answer-set changes, never two MACs for one request"
echo "PASS: no two hosts ever held the VIP in one 20 ms sample ($(grep -vc DOUBLE "$LAB_DIR/vip.log") holder changes logged)"
