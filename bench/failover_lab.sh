#!/usr/bin/env bash
# Failover benchmark in the namespace lab (root): N rounds each of crash (the leader host's link
# down; kill -9 of the leader daemon) and planned (SIGTERM) failover, 3 daemons, a client pinging
# the VIP every 10 ms. Prints the client outage (longest gap between replies) p50/p90/p99/max per
# kind as a markdown table, then the daemons' idle RSS and CPU over 10 s. A measurement, not a test: it never judges timings.
#
# Usage: bench/failover_lab.sh [HACOORD_BINARY] [ROUNDS=20]     (env TTL_MS=2000 RENEW_MS=500)
# A TTL under ~1.5 s leaves the VIP no kernel lifetime: add LAB_ALLOW_NO_KERNEL_LIFETIME=true to
# measure that fast profile (the daemons refuse the config otherwise, and say so).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/lab.sh"
HACOORD=${1:-$ROOT/build/src/cli/hacoord}
ROUNDS=${2:-20}
TTL=${TTL_MS:-2000}
RENEW=${RENEW_MS:-500}
[ -x "$HACOORD" ] || { echo "no hacoord binary at $HACOORD (pass it as the first argument)"; exit 2; }
if ! why=$(lab_available); then echo "failover_lab: needs root with network namespaces: $why"; exit 77; fi

lab_init "$HACOORD" 3 "$TTL" "$RENEW"
trap lab_cleanup EXIT
trap 'exit 130' INT TERM
lab_up || exit 1
for h in "${LAB_HOSTS[@]}"; do lab_start "$h"; done
lab_start_pinger "$LAB_DIR/ping.log"
lab_start_vippoll "$LAB_DIR/vip.log"

converged() {  # [NOT_NODE]: leader (not NOT_NODE) alone holds the VIP, client's entry is its MAC, replies flow
  LEADER=$(lab_leader)
  [ -n "$LEADER" ] && [ "$LEADER" != "${1:-}" ] || return 1
  [ "$(lab_vip_holders)" = "$LEADER" ] || return 1
  [ "$(lab_client_vip_mac)" = "$(lab_mac "$LEADER")" ] || return 1
  local last
  last=$(tail -n1 "$LAB_DIR/ping.log" 2>/dev/null | cut -d' ' -f1)
  [ -n "$last" ] && [ $(( $(lab_now_ms) - last )) -lt 300 ]
}
all_healthy() { local h; for h in "${LAB_HOSTS[@]}"; do lab_cli health "$h" >/dev/null 2>&1 || return 1; done; }
ready() { converged && all_healthy; }

lab_wait_for 30000 ready || { echo "lab did not converge"; exit 1; }
LINKDOWN=()
CRASH=()
PLANNED=()
for ((r = 1; r <= ROUNDS; r++)); do
  for kind in linkdown crash planned; do
    lab_wait_for 30000 ready || { echo "round $r: lab did not converge before $kind"; exit 1; }
    old=$LEADER
    t0=$(lab_now_ms)
    case $kind in
      linkdown) ip -n "$(lab_ns "$old")" link set eth0 down ;;  # the host's network crashes
      crash) lab_kill "$old" ;;
      planned) kill -TERM "${LAB_PID[$old]}" ;;
    esac
    lab_wait_for 30000 converged "$old" || { echo "round $r: no takeover after $kind of $old"; exit 1; }
    t1=$(lab_now_ms)
    gap=$(lab_gap "$LAB_DIR/ping.log" "$t0" "$t1" | cut -d' ' -f1)
    case $kind in linkdown) LINKDOWN+=("$gap") ;; crash) CRASH+=("$gap") ;; planned) PLANNED+=("$gap") ;; esac
    printf '  round %2d %-8s %s -> %s  outage %5d ms\n' "$r" "$kind" "$old" "$LEADER" "$gap" >&2
    if [ "$kind" = linkdown ]; then
      ip -n "$(lab_ns "$old")" link set eth0 up  # the daemon lived on: it rejoins as a follower
      continue
    fi
    [ "$kind" = planned ] && { lab_wait_for 10000 bash -c "! kill -0 ${LAB_PID[$old]} 2>/dev/null"; lab_reap "$old"; }
    lab_start "$old"
  done
done
lab_wait_for 30000 ready || { echo "lab did not converge after the rounds"; exit 1; }
doubles=$(grep -c DOUBLE "$LAB_DIR/vip.log")

pct() {  # values... -> "p50 p90 p99 max" (nearest rank)
  python3 -c 'import sys, math
v = sorted(int(x) for x in sys.argv[1:])
r = lambda p: v[max(0, math.ceil(p / 100 * len(v)) - 1)]
print(r(50), r(90), r(99), v[-1])' "$@"
}

# Idle cost: RSS and CPU (utime+stime, clock ticks) of the leader and one follower over 10 s.
HZ=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
follower=""
for h in "${LAB_HOSTS[@]}"; do [ "$h" != "$LEADER" ] && { follower=$h; break; }; done
lp=${LAB_PID[$LEADER]}; fp=${LAB_PID[$follower]}
l0=$(ticks "$lp"); f0=$(ticks "$fp"); w0=$(lab_now_ms)
sleep 10  # the measurement window itself (not a wait for a condition)
l1=$(ticks "$lp"); f1=$(ticks "$fp"); w1=$(lab_now_ms)
cpu() { python3 -c "print(f'{($2 - $1) / $HZ / (($w1 - $w0) / 1000) * 100:.2f}')"; }

read -r d50 d90 d99 dmax <<<"$(pct "${LINKDOWN[@]}")"
read -r c50 c90 c99 cmax <<<"$(pct "${CRASH[@]}")"
read -r p50 p90 p99 pmax <<<"$(pct "${PLANNED[@]}")"
echo
echo "Failover outage seen by a client pinging the VIP every 10 ms (longest gap between replies),"
echo "lease TTL ${TTL} ms, renew ${RENEW} ms, 3 daemons, ${ROUNDS} rounds per kind, $(nproc) CPUs,"
echo "namespace lab (veth + bridge), nats-server -js single node. Two VIP holders in one 20 ms sample: ${doubles}."
echo
echo "| failover | TTL ms | rounds | p50 ms | p90 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|---|"
echo "| crash (leader host's link down) | $TTL | ${#LINKDOWN[@]} | $d50 | $d90 | $d99 | $dmax |"
echo "| crash (kill -9 leader daemon) | $TTL | ${#CRASH[@]} | $c50 | $c90 | $c99 | $cmax |"
echo "| planned (SIGTERM leader) | $TTL | ${#PLANNED[@]} | $p50 | $p90 | $p99 | $pmax |"
echo
echo "| daemon at idle (10 s) | VmRSS KiB | CPU % of one core |"
echo "|---|---|---|"
echo "| leader ($LEADER) | $(rss "$lp") | $(cpu "$l0" "$l1") |"
echo "| follower ($follower) | $(rss "$fp") | $(cpu "$f0" "$f1") |"
