# shellcheck shell=bash
# Network-namespace lab for hacoord (source it; needs root, `ip netns`, veth and bridge).
#
#   hub      bridge br0 192.0.2.1/24, runs `nats-server -js -a 192.0.2.1 -p 4222`
#   h1..hN   eth0 = 192.0.2.1<i>/24 (veth into br0), each runs `hacoord daemon` (VIP on eth0)
#   client   eth0 = 192.0.2.50/24, pings the VIP 192.0.2.100
#
# Only 192.0.2.0/24 (TEST-NET-1), only inside namespaces named hacoord-lab-<pid>-*, which
# lab_cleanup deletes (call it from an EXIT trap). Every process is started by us and killed by PID.
#
#   lab_init HACOORD_BINARY [N_HOSTS=3] [TTL_MS=2000] [RENEW_MS=500] [MARGIN_MS=TTL/10]
#                               (env LAB_ALLOW_NO_KERNEL_LIFETIME=true for a TTL under ~1.5 s: the
#                               config's vip.allowWithoutKernelLifetime, the fast profile)
#   lab_up                      namespaces, bridge, veths, sysctls, nats-server, config files
#   lab_start h2 | lab_stop h2 (SIGTERM, waits) | lab_kill h2 (-9) | lab_sigstop h2 | lab_sigcont h2
#   lab_nats_stop | lab_nats_start   SIGTERM nats-server (by PID, waits) | start it again (same store)
#   lab_cli status --json       the CLI run in the hub namespace (config of h1: it only reads NATS)
#   lab_vip_holders             hosts holding the VIP right now ("h1 h3"), from `ip -n ns addr`
#   lab_leader                  the leader per `hacoord status --json` ("" when none)
#   lab_epoch                   the lease record's epoch per `hacoord status --json`
#   lab_mac h2 | lab_client_vip_mac
#   lab_wait_for DEADLINE_MS CMD...  polls CMD (10 ms apart) until it succeeds or the deadline passes
#   lab_start_addrmon | lab_overlaps   exact VIP holding intervals per host (`ip -ts monitor`)
#   lab_start_kvwatch KVWATCH_BINARY   every lease record with its server stamp (kv.log)
#   lab_handover FROM_MS OLD NEW | lab_order | lab_takeover FROM_MS NEW   against the lease records
#   lab_stable FROM_MS LEADER | lab_vip_edge off|on FROM_MS HOST   exact, from the same logs
#   lab_holds_for PERIOD_MS CMD...   CMD true at every poll for PERIOD_MS (fails at the first breach)
#   lab_cleanup
#
# Sysctls (all per namespace; the root namespace is never touched):
#   client  arp_accept=1: a gratuitous ARP creates/updates the VIP's neighbour entry even when the
#           client has none yet, so the GARP burst of a new leader redirects the client at once
#           instead of after the old entry goes stale (neighbour timers: several seconds).
#   hosts   promote_secondaries=1: if the VIP is configured with the subnet's prefix (e.g. /24) it
#           becomes a *secondary* address of eth0; without this, deleting the primary would flush
#           it silently. Harmless with the /32 used here. arp_ignore=1/arp_announce=2: answer ARP
#           only for addresses on the receiving interface and source ARP from the best local
#           address, so no host ever answers for an address it does not hold (no ARP flux).

LAB_TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lab_tools.py"
LAB_VIP=192.0.2.100
LAB_HUB_IP=192.0.2.1
LAB_CLIENT_IP=192.0.2.50

lab_now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
lab_log() { echo "[$(date +%H:%M:%S.%3N)] $*" >&2; }

lab_init() {
  LAB_HACOORD=$1
  LAB_N=${2:-3}
  LAB_TTL=${3:-2000}
  LAB_RENEW=${4:-500}
  LAB_MARGIN=${5:-$((LAB_TTL / 10))}
  LAB_P="hacoord-lab-$$-"
  LAB_DIR=$(mktemp -d /tmp/hacoord-lab.XXXXXX)
  LAB_NATS_PID=""
  LAB_BG_PIDS=()
  declare -gA LAB_PID=()
  LAB_HOSTS=()
  local i
  for ((i = 1; i <= LAB_N; i++)); do LAB_HOSTS+=("h$i"); done
}

lab_ns() { echo "${LAB_P}$1"; }

# Succeeds when this process can create network namespaces with veth and bridge links.
lab_available() {
  [ "$(id -u)" -eq 0 ] || { echo "not root"; return 1; }
  command -v ip >/dev/null || { echo "no iproute2 'ip'"; return 1; }
  command -v nats-server >/dev/null || { echo "no nats-server in PATH"; return 1; }
  command -v python3 >/dev/null || { echo "no python3"; return 1; }
  local probe="hacoord-lab-$$-probe"
  ip netns add "$probe" 2>/dev/null || { echo "cannot create network namespaces"; return 1; }
  local ok=0
  ip -n "$probe" link add br0 type bridge 2>/dev/null || ok=1
  ip -n "$probe" link add va type veth peer name vb 2>/dev/null || ok=1
  ip netns del "$probe" 2>/dev/null
  [ $ok -eq 0 ] || { echo "veth or bridge links unavailable"; return 1; }
}

lab_wait_for() {
  local deadline=$(( $(lab_now_ms) + $1 )); shift
  while :; do
    "$@" && return 0
    [ "$(lab_now_ms)" -lt "$deadline" ] || return 1
    sleep 0.01
  done
}

# lab_holds_for PERIOD_MS CMD...: CMD succeeds at every poll (10 ms apart) for PERIOD_MS, the last
# poll at or after its end; fails at the first poll where it does not.
lab_holds_for() {
  local end=$(( $(lab_now_ms) + $1 )); shift
  while :; do
    "$@" || return 1
    [ "$(lab_now_ms)" -lt "$end" ] || return 0
    sleep 0.01
  done
}

lab_attach() {  # NAME IP: a namespace with eth0 (veth into the hub bridge)
  local ns hub
  ns=$(lab_ns "$1"); hub=$(lab_ns hub)
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$hub" link add "v-$1" type veth peer name eth0 netns "$ns"
  ip -n "$hub" link set "v-$1" master br0 up
  ip -n "$ns" addr add "$2/24" dev eth0
  ip -n "$ns" link set eth0 up
}

lab_write_config() {  # HOST
  # The epoch floor goes to the lab's temp dir, never to the host's /var/lib/hacoord.
  mkdir -p "$LAB_DIR/state-$1"
  cat >"$LAB_DIR/$1.json" <<EOF
{
  "clusterId": "lab",
  "nodeId": "$1",
  "stateDir": "$LAB_DIR/state-$1",
  "nats": { "servers": ["nats://$LAB_HUB_IP:4222"] },
  "election": { "leaseTtlMs": $LAB_TTL, "renewIntervalMs": $LAB_RENEW, "safetyMarginMs": $LAB_MARGIN },
  "vip": { "address": "$LAB_VIP", "netmask": 32, "interface": "eth0",
           "allowWithoutKernelLifetime": ${LAB_ALLOW_NO_KERNEL_LIFETIME:-false} },
  "log": { "level": "info" }$(lab_mesh_section "$1")
}
EOF
}

# With LAB_MESH_DIR set (holding mesh-<host>/{ca.crt,<host>.crt,<host>.key} from `hacoord certs`):
# a peer mesh section listening on the host's eth0 address, short timings. Nothing otherwise.
lab_mesh_section() {  # HOST
  [ -n "${LAB_MESH_DIR:-}" ] || return 0
  local d="$LAB_MESH_DIR/mesh-$1"
  printf ',\n  "mesh": { "listen": "192.0.2.1%s:7400", "ca": "%s/ca.crt", "cert": "%s/%s.crt", "key": "%s/%s.key",\n' \
    "${1#h}" "$d" "$d" "$1" "$d" "$1"
  printf '            "pingIntervalMs": 200, "suspectAfterMs": 600, "deadAfterMs": 1000, "refreshMs": 1000 }'
}

nats_up() { ip netns exec "$(lab_ns hub)" bash -c "exec 3<>/dev/tcp/$LAB_HUB_IP/4222" 2>/dev/null; }

lab_up() {
  local hub i h
  hub=$(lab_ns hub)
  ip netns add "$hub"
  ip -n "$hub" link set lo up
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" link set br0 type bridge stp_state 0 forward_delay 0 2>/dev/null || true
  ip -n "$hub" addr add "$LAB_HUB_IP/24" dev br0
  ip -n "$hub" link set br0 up
  for ((i = 1; i <= LAB_N; i++)); do
    h=h$i
    lab_attach "$h" "192.0.2.1$i"
    ip netns exec "$(lab_ns "$h")" sysctl -qw net.ipv4.conf.all.promote_secondaries=1 \
      net.ipv4.conf.eth0.promote_secondaries=1 net.ipv4.conf.all.arp_ignore=1 \
      net.ipv4.conf.all.arp_announce=2
    lab_write_config "$h"
  done
  lab_attach client "$LAB_CLIENT_IP"
  ip netns exec "$(lab_ns client)" sysctl -qw net.ipv4.conf.all.arp_accept=1 \
    net.ipv4.conf.eth0.arp_accept=1
  lab_nats_start
}

lab_nats_start() {  # nats-server in the hub (same address, port and store every time)
  ip netns exec "$(lab_ns hub)" nats-server -js -a "$LAB_HUB_IP" -p 4222 -sd "$LAB_DIR/js" \
    >>"$LAB_DIR/nats.log" 2>&1 &
  LAB_NATS_PID=$!
  lab_wait_for 10000 nats_up || { lab_log "nats-server did not start"; cat "$LAB_DIR/nats.log" >&2; return 1; }
}
lab_nats_stop() {  # SIGTERM by PID, waits (bounded) for exit, then -9
  [ -n "${LAB_NATS_PID:-}" ] || return 0
  local pid=$LAB_NATS_PID
  kill -TERM "$pid" 2>/dev/null
  lab_wait_for 10000 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  LAB_NATS_PID=""
}

lab_start() {
  ip netns exec "$(lab_ns "$1")" "$LAB_HACOORD" daemon --config "$LAB_DIR/$1.json" \
    >>"$LAB_DIR/$1.log" 2>&1 &
  LAB_PID[$1]=$!
}
lab_alive() { [ -n "${LAB_PID[$1]:-}" ] && kill -0 "${LAB_PID[$1]}" 2>/dev/null; }
lab_reap() { wait "${LAB_PID[$1]}" 2>/dev/null || true; LAB_PID[$1]=""; }
lab_stop() {  # SIGTERM (planned handover), waits for exit (bounded), then -9 if needed
  lab_alive "$1" || return 0
  kill -TERM "${LAB_PID[$1]}"
  local pid=${LAB_PID[$1]}
  lab_wait_for 10000 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null
  lab_reap "$1"
}
lab_kill() { lab_alive "$1" && kill -9 "${LAB_PID[$1]}"; lab_reap "$1"; }
lab_sigstop() { kill -STOP "${LAB_PID[$1]}"; }
lab_sigcont() { kill -CONT "${LAB_PID[$1]}"; }

lab_cli() { ip netns exec "$(lab_ns hub)" "$LAB_HACOORD" "$1" --config "$LAB_DIR/h1.json" "${@:2}"; }
lab_host_cli() { ip netns exec "$(lab_ns hub)" "$LAB_HACOORD" "$2" --config "$LAB_DIR/$1.json" "${@:3}"; }

lab_leader() {
  lab_cli status --json 2>/dev/null | python3 -c \
    'import json,sys
try: print(json.load(sys.stdin).get("leader",""))
except Exception: print("")'
}

lab_epoch() {  # the lease record's epoch per `hacoord status --json` ("" when unreadable)
  lab_cli status --json 2>/dev/null | python3 -c \
    'import json,sys
try: print(json.load(sys.stdin).get("epoch",""))
except Exception: print("")'
}

lab_vip_holders() {
  local h out=()
  for h in "${LAB_HOSTS[@]}"; do
    ip -n "$(lab_ns "$h")" -o -4 addr show dev eth0 2>/dev/null | grep -q " $LAB_VIP/" && out+=("$h")
  done
  echo "${out[*]}"
}

lab_mac() { ip -n "$(lab_ns "$1")" link show dev eth0 | awk '/link\/ether/ {print $2}'; }
lab_client_vip_mac() {
  ip -n "$(lab_ns client)" neigh show "$LAB_VIP" dev eth0 | awk '{for (i=1;i<NF;i++) if ($i=="lladdr") print $(i+1)}'
}

# Background helpers (killed by lab_cleanup, by PID).
lab_start_pinger() {  # OUT: reply log of a 10 ms ICMP pinger in the client namespace
  ip netns exec "$(lab_ns client)" python3 "$LAB_TOOLS" ping "$LAB_VIP" 0.01 "$1" &
  LAB_PINGER_PID=$!
  LAB_BG_PIDS+=($!)
}
lab_start_vippoll() {  # OUT: holder changes every 20 ms; "DOUBLE" lines on two holders
  local names=() h
  for h in "${LAB_HOSTS[@]}"; do names+=("$(lab_ns "$h")"); done
  python3 "$LAB_TOOLS" vippoll "$LAB_VIP" 0.02 "$1" "${names[@]}" &
  LAB_POLL_PID=$!
  LAB_BG_PIDS+=($!)
}
lab_start_addrmon() {  # the kernel's address events of every host, for lab_overlaps
  local h
  for h in "${LAB_HOSTS[@]}"; do
    # Real-time priority: the receive stamps stay within microseconds of the kernel's events.
    # TZ=UTC: `ip -ts` prints local time without a zone; in UTC lab_tools.py reads it exactly.
    TZ=UTC chrt -f 50 ip -n "$(lab_ns "$h")" -ts monitor address dev eth0 >"$LAB_DIR/addr-$h.log" 2>&1 &
    LAB_BG_PIDS+=($!)
  done
}
lab_start_kvwatch() {  # KVWATCH_BINARY: every revision of the lease key, server-stamped, to kv.log
  # In the hub namespace (next to nats-server): hacoord_test_kvwatch waits for the bucket, then
  # prints "<created_ns> <rev> <op> <src> <value>" per revision. Its stamps and those of `ip -ts
  # monitor` are both CLOCK_REALTIME of this host (namespaces share it), so they compare directly.
  ip netns exec "$(lab_ns hub)" "$1" "nats://$LAB_HUB_IP:4222" "HACOORD_lab" leader \
    >"$LAB_DIR/kv.log" 2>"$LAB_DIR/kvwatch.err" &
  LAB_KVWATCH_PID=$!
  LAB_BG_PIDS+=($!)
}
lab_addr_logs() { local h; for h in "${LAB_HOSTS[@]}"; do echo "$h=$LAB_DIR/addr-$h.log"; done; }
# lab_handover FROM_MS OLD NEW: a planned handover's ordering against the lease records (DESIGN §3,
# §4): OLD's VIP delete before its vacant record, NEW's VIP add after its winning write. Prints the
# margins, or the problem (exit 1).
lab_handover() {
  # shellcheck disable=SC2046
  python3 "$LAB_TOOLS" handover "$LAB_VIP" "$LAB_DIR/kv.log" "$1" "$2" "$3" $(lab_addr_logs)
}
# lab_order: every VIP add of every host came after a lease record naming that host holder, and
# every takeover of a lease not handed over came at least its leaseMs after the record it replaced
# ("OK ..." or ADD-BEFORE-WRITE / EARLY-TAKEOVER lines, exit 1).
lab_order() {
  # shellcheck disable=SC2046
  python3 "$LAB_TOOLS" order "$LAB_VIP" "$LAB_DIR/kv.log" $(lab_addr_logs)
}
# lab_stable FROM_MS LEADER: since FROM_MS only renewals of LEADER's epoch, LEADER held the VIP
# throughout and nobody else held it (exact: records and address events). Prints why not (exit 1).
lab_stable() {
  # shellcheck disable=SC2046
  python3 "$LAB_TOOLS" stable "$LAB_VIP" "$LAB_DIR/kv.log" "$1" "$2" $(lab_addr_logs)
}
# lab_vip_edge off|on FROM_MS HOST: wall time in us (from HOST's address events) at which the VIP
# went off (the holding interval covering FROM_MS, or the next one, ended) or on (first add at or
# after FROM_MS); nothing if it did not.
lab_vip_edge() { python3 "$LAB_TOOLS" edge "$LAB_VIP" "$1" "$2" "$LAB_DIR/addr-$3.log"; }
# lab_takeover FROM_MS NEW: how long after the record it replaced NEW's takeover was stamped.
lab_takeover() { python3 "$LAB_TOOLS" takeover "$LAB_DIR/kv.log" "$1" "$2"; }
lab_overlaps() {  # exact intervals in which two hosts held the VIP ("OK n" or OVERLAP lines, exit 1)
  local h args=()
  for h in "${LAB_HOSTS[@]}"; do args+=("$h=$LAB_DIR/addr-$h.log"); done
  python3 "$LAB_TOOLS" overlaps "$LAB_VIP" "${args[@]}"
}
lab_start_arpwatch() {  # OUT: ARP who-has VIP from the client every 20 ms; "DOUBLE" on 2 MACs
  ip netns exec "$(lab_ns client)" python3 "$LAB_TOOLS" arpwatch "$LAB_VIP" "$LAB_CLIENT_IP" eth0 \
    0.02 0.015 "$1" &
  LAB_ARPWATCH_PID=$!
  LAB_BG_PIDS+=($!)
}
lab_gap() { python3 "$LAB_TOOLS" gap "$@"; }  # REPLIES FROM_MS TO_MS -> "gap_ms replies"

lab_cleanup() {
  local pid h ns
  for pid in "${LAB_BG_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for h in "${!LAB_PID[@]}"; do
    pid=${LAB_PID[$h]}
    [ -n "$pid" ] && { kill -CONT "$pid" 2>/dev/null; kill -9 "$pid" 2>/dev/null; } || true
  done
  [ -n "${LAB_NATS_PID:-}" ] && kill -9 "$LAB_NATS_PID" 2>/dev/null || true
  for pid in "${LAB_BG_PIDS[@]}" "${LAB_PID[@]}" ${LAB_NATS_PID:-}; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  for ns in hub client "${LAB_HOSTS[@]}"; do
    ip netns del "$(lab_ns "$ns")" 2>/dev/null || true
  done
  [ -n "${LAB_KEEP:-}" ] || rm -rf "${LAB_DIR:?}"
}
