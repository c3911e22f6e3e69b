#!/usr/bin/env bash
# The main job: install, build, and run a local 3-node hacoord cluster on its own nats-server -js
# (loopback, temporary store) with the peer mesh. Shows the leader, the mesh peers and a `hacoord
# ping`, a planned handover, a crash takeover (and the mesh declaring the crashed peer dead), then
# cleans up. HACOORD_DEMO=loopback runs the loopback demo even as root (no namespace lab).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/install-deps.sh
echo "== building (build/) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHACOORD_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target hacoord >/dev/null
HACOORD="$ROOT/build/src/cli/hacoord"

# As root (with network namespaces, veth and bridge): the VIP demo in a namespace lab. Three hosts
# and a client on a bridge, nats-server in a hub namespace, the client pinging the VIP every 10 ms;
# kill -9 the leader daemon and show the VIP answering from the new leader and the client's outage.
run_lab_demo() {
  source "$ROOT/scripts/lab.sh"
  lab_init "$HACOORD" 3 2000 500
  trap lab_cleanup EXIT
  # The peer mesh between the hosts (listening on their eth0 addresses): a CA and a certificate per
  # host from `hacoord certs`, in the lab's temp dir; lab_write_config adds the mesh sections.
  "$HACOORD" certs init-ca --dir "$LAB_DIR/ca" >/dev/null
  for h in "${LAB_HOSTS[@]}"; do
    "$HACOORD" certs issue --dir "$LAB_DIR/ca" --cluster lab --node "$h" --out "$LAB_DIR/mesh-$h" >/dev/null
  done
  LAB_MESH_DIR=$LAB_DIR
  echo "== lab: hub namespace (bridge 192.0.2.1/24 + nats-server -js), hosts h1..h3 (192.0.2.11-13),"
  echo "   client 192.0.2.50; VIP $LAB_VIP on the leader's eth0 (lease TTL 2000 ms, renew 500 ms)"
  lab_up
  for h in "${LAB_HOSTS[@]}"; do lab_start "$h"; done
  lab_start_pinger "$LAB_DIR/ping.log"
  lab_demo_converged() {
    L=$(lab_leader)
    [ -n "$L" ] && [ "$L" != "${1:-}" ] && [ "$(lab_vip_holders)" = "$L" ] &&
      [ "$(lab_client_vip_mac)" = "$(lab_mac "$L")" ] &&
      [ -s "$LAB_DIR/ping.log" ] &&
      [ $(( $(lab_now_ms) - $(tail -n1 "$LAB_DIR/ping.log" | cut -d' ' -f1) )) -lt 300 ]
  }
  lab_wait_for 20000 lab_demo_converged || { echo "no leader with the VIP within 20 s"; return 1; }
  local old=$L
  echo
  lab_cli status
  echo
  lab_peer_is() { lab_host_cli "$1" peers 2>/dev/null | grep -Eq "^$2 +$3"; }
  echo "== the peer mesh (mutual TLS between the hosts' eth0 addresses): h1's peers, h1 -> h2 RTT"
  lab_wait_for 15000 lab_peer_is h1 h2 alive && lab_wait_for 15000 lab_peer_is h1 h3 alive ||
    echo "   (h1 does not see h2 and h3 alive within 15 s)"
  lab_host_cli h1 peers 2>&1 | sed 's/^/   /' || true
  lab_host_cli h1 ping h2 --count 3 2>&1 | sed 's/^/   /' || true
  echo
  echo "   VIP holders: $(lab_vip_holders); client's neighbour entry for $LAB_VIP: $(lab_client_vip_mac) ($old eth0: $(lab_mac "$old"))"
  echo
  echo "== crash: kill -9 the leader daemon on $old (the host stays up), client keeps pinging"
  local t0 t1
  t0=$(lab_now_ms)
  lab_kill "$old"
  lab_wait_for 20000 lab_demo_converged "$old" || { echo "no takeover within 20 s"; return 1; }
  t1=$(lab_now_ms)
  local gap
  gap=$(lab_gap "$LAB_DIR/ping.log" "$t0" "$t1" | cut -d' ' -f1)
  echo "   new leader $L holds the VIP after $((t1 - t0)) ms; VIP holders now: $(lab_vip_holders)"
  echo "   client's neighbour entry for $LAB_VIP: $(lab_client_vip_mac) = $L eth0 $(lab_mac "$L")"
  echo "   the client saw no replies for $gap ms (longest gap in 10 ms pings; lease TTL 2000 ms,"
  echo "   the dead daemon's VIP expired by its 1 s kernel lifetime before the new leader added it)"
  echo
  lab_cli status
  echo
  echo "== the mesh saw the crash: $L's peers ($old dead, with the reason its peers give)"
  lab_wait_for 15000 lab_peer_is "$L" "$old" dead || echo "   ($L does not see $old dead within 15 s)"
  lab_host_cli "$L" peers 2>&1 | sed 's/^/   /' || true
  echo
  echo "lab demo done: cleaning up (daemons, nats-server, namespaces, $LAB_DIR)"
}
if [ "${HACOORD_DEMO:-}" = loopback ]; then
  echo "== HACOORD_DEMO=loopback: running the election-only demo on 127.0.0.1"
elif [ "$(id -u)" -eq 0 ]; then
  source "$ROOT/scripts/lab.sh"
  if why=$(lab_available); then
    run_lab_demo
    exit $?
  fi
  echo "== root, but the namespace lab is unavailable ($why): running the election-only demo"
else
  echo "== not root: the VIP lab (network namespaces) needs root; running the election-only demo on"
  echo "   127.0.0.1 instead (sudo bash scripts/demo.sh for the VIP failover demo)"
fi

WORK=$(mktemp -d /tmp/hacoord-demo.XXXXXX)
PIDS=()
NATS_PID=""
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [ -n "$NATS_PID" ]; then kill "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  # Ask the kernel for a free loopback port.
  local port
  while :; do
    port=$(( (RANDOM % 20000) + 30000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

PORT=$(free_port)
# NATS with authorization (config/nats-server-auth.conf, docs/security.md): one user per node, an
# operator and a read-only observer. Fresh random passwords, kept in the demo's temp dir only.
umask 077
USERS=(hacoord-node1 hacoord-node2 hacoord-node3 hacoord-operator hacoord-observer)
declare -A PASSWORD
for u in "${USERS[@]}"; do PASSWORD[$u]=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n'); done
cp config/nats-server-auth.conf "$WORK/nats-server.conf"
for u in "${USERS[@]}"; do
  sed -i "s|REPLACE-$u-password|${PASSWORD[$u]}|" "$WORK/nats-server.conf"
done
sed -i "s|/var/lib/nats/jetstream|$WORK/js|" "$WORK/nats-server.conf"
if grep -q 'password: "REPLACE-' "$WORK/nats-server.conf"; then
  echo "demo: config/nats-server-auth.conf has a placeholder this script does not fill in" >&2
  exit 1
fi
echo "== starting nats-server -js on 127.0.0.1:$PORT with config/nats-server-auth.conf"
echo "   (users hacoord-node1..3, hacoord-operator, hacoord-observer; store $WORK/js) =="
nats-server -c "$WORK/nats-server.conf" -a 127.0.0.1 -p "$PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.05
done

TTL=2000
# Each user's password in its own 0600 file, named by nats.passwordFile (never in the config).
for u in "${USERS[@]}"; do printf '%s\n' "${PASSWORD[$u]}" >"$WORK/$u.password"; done
mkdir -p "$WORK/state"
# The peer mesh (README "Peer mesh"): a cluster CA and one certificate per node, made here with
# `hacoord certs`, kept in the temp dir; each daemon listens on 127.0.0.1 (port 0: the kernel picks,
# the members record in NATS tells the others).
"$HACOORD" certs init-ca --dir "$WORK/ca" >/dev/null
for n in node1 node2 node3; do
  "$HACOORD" certs issue --dir "$WORK/ca" --cluster demo --node "$n" --out "$WORK/mesh-$n" >/dev/null
done
write_config() {  # FILE NODE_ID USER: with a mesh section when NODE_ID is one of the nodes
  local mesh=""
  if [ -d "$WORK/mesh-$2" ]; then
    mesh=",
  \"mesh\": { \"listen\": \"127.0.0.1:0\", \"ca\": \"$WORK/mesh-$2/ca.crt\",
            \"cert\": \"$WORK/mesh-$2/$2.crt\", \"key\": \"$WORK/mesh-$2/$2.key\",
            \"pingIntervalMs\": 200, \"suspectAfterMs\": 600, \"deadAfterMs\": 1000, \"refreshMs\": 1000 }"
  fi
  cat >"$1" <<EOF
{
  "clusterId": "demo",
  "nodeId": "$2",
  "stateDir": "$WORK/state",
  "nats": { "servers": ["nats://127.0.0.1:$PORT"], "user": "$3", "passwordFile": "$WORK/$3.password" },
  "election": { "leaseTtlMs": $TTL, "renewIntervalMs": 500 },
  "log": { "level": "info" }$mesh
}
EOF
}
for n in node1 node2 node3; do write_config "$WORK/$n.json" "$n" "hacoord-$n"; done
# The command line runs as the observer (status, peers, ping) or the operator (control), never as
# a node. `hacoord peers` and `hacoord ping` act for the config's node: observer-<node>.json names
# the node and logs in as the observer.
write_config "$WORK/observer.json" observer hacoord-observer
write_config "$WORK/operator.json" operator hacoord-operator
for n in node1 node2 node3; do write_config "$WORK/observer-$n.json" "$n" hacoord-observer; done

declare -A NODE_PID
start_node() {
  "$HACOORD" daemon --config "$WORK/$1.json" >>"$WORK/$1.log" 2>&1 &
  NODE_PID[$1]=$!
  PIDS+=($!)
}

leader_json() { "$HACOORD" status --config "$WORK/observer.json" --json 2>/dev/null || true; }
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\)\"\{0,1\}.*/\1/p"; }

# Polls `hacoord status` until the leader differs from $1 (and is not empty); prints it.
wait_leader_other_than() {
  local old=$1 deadline=$(( $(now_ms) + 15000 )) leader
  while [ "$(now_ms)" -lt "$deadline" ]; do
    leader=$(leader_json | field leader)
    if [ -n "$leader" ] && [ "$leader" != "$old" ]; then echo "$leader"; return 0; fi
    sleep 0.01
  done
  echo "timeout" ; return 1
}

echo "== starting three daemons node1 node2 node3, each as its own NATS user (lease TTL ${TTL} ms) =="
for n in node1 node2 node3; do start_node "$n"; done
LEADER=$(wait_leader_other_than "")
echo
"$HACOORD" status --config "$WORK/observer.json"
echo

# `hacoord peers` of node $1 (as the observer) until its line for peer $2 matches the regex $3.
wait_peer_state() {
  local deadline=$(( $(now_ms) + 15000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    "$HACOORD" peers --config "$WORK/observer-$1.json" 2>/dev/null | grep -Eq "^$2 +$3" && return 0
    sleep 0.05
  done
  echo "   (timeout: $1 does not see $2 as $3)"; return 1
}

echo "== the peer mesh (mutual TLS on 127.0.0.1, certificates from 'hacoord certs'): node1's peers =="
{ wait_peer_state node1 node2 alive && wait_peer_state node1 node3 alive; } || true
"$HACOORD" peers --config "$WORK/observer-node1.json" 2>&1 | sed 's/^/   /' || true
echo "== 'hacoord ping': node1's daemon measures its mesh round trip to node3 (sys.ping) =="
"$HACOORD" ping --config "$WORK/observer-node1.json" node3 --count 3 2>&1 | sed 's/^/   /' || true
echo

echo "== the observer may read but not steer: 'hacoord demote' as hacoord-observer =="
"$HACOORD" demote --config "$WORK/observer.json" 2>&1 | sed 's/^/   /' || true
echo "   (refused by nats-server; $LEADER still leads)"
echo

echo "== planned handover: SIGTERM to the leader $LEADER =="
t0=$(now_ms)
kill -TERM "${NODE_PID[$LEADER]}"
NEW=$(wait_leader_other_than "$LEADER")
t1=$(now_ms)
echo "   new leader $NEW seen by 'hacoord status' after $((t1 - t0)) ms (includes CLI start-up)"
wait "${NODE_PID[$LEADER]}" 2>/dev/null || true
start_node "$LEADER"
echo "   $LEADER restarted as a follower"
echo
"$HACOORD" status --config "$WORK/observer.json"
echo

echo "== crash: kill -9 the leader $NEW =="
t0=$(now_ms)
kill -9 "${NODE_PID[$NEW]}"
NEWER=$(wait_leader_other_than "$NEW")
t1=$(now_ms)
echo "   new leader $NEWER after $((t1 - t0)) ms (a crash costs up to the lease TTL of ${TTL} ms)"
echo
"$HACOORD" status --config "$WORK/observer.json"
echo
echo "== the mesh saw the crash: $NEWER's peers ($NEW dead, with the reason its peers give) =="
wait_peer_state "$NEWER" "$NEW" dead || true
"$HACOORD" peers --config "$WORK/observer-$NEWER.json" 2>&1 | sed 's/^/   /' || true
echo
echo "== what the daemons logged about leadership =="
grep -h -E "LEADER|no longer leader" "$WORK"/node*.log | sort | sed 's/^/   /'
echo
echo "demo done: cleaning up (daemons, nats-server, $WORK)"
