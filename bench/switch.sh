#!/bin/bash
# weft's userspace switch against the kernel bridge, Open vSwitch's
# userspace (netdev) datapath (offloads off, and userspace TSO on) and a
# minimal TAP-to-TAP forwarder, between two namespaces, interleaved in one
# run: TCP single stream, 64-byte UDP packets/s received (iperf3, and the
# faster generator `swgen send`), and the switch process's CPU time per
# forwarded frame. Then the switch core alone (`swcore`) and the memory of
# weft's datapath with 100,000 learned MACs. Prints a Markdown table and,
# with --write, puts it into docs/performance.md between the bench:switch
# markers.
#
#   apt-get install -y iperf3 ethtool openvswitch-switch
#   cargo build --release -p weft-cli -p weft-bench
#   sudo bench/switch.sh [--write] [ROUNDS] [SECONDS]
#
# Everything runs in namespaces this script makes (wsb-*) and in its own
# weft lab (swb); Open vSwitch runs from a private temporary directory
# inside a namespace of its own and never touches the machine's OVS
# service. Every process it starts is stopped by its PID; every load is
# bounded in time; everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=0; [ "${1:-}" = --write ] && { WRITE=1; shift; }
ROUNDS=${1:-3}
T=${2:-3}
# swgen senders for the 64-byte figure, one pinned to each CPU.
export SENDERS=${SENDERS:-1}
W=$PWD/target/release/weft
G=$PWD/target/release/swgen
C=$PWD/target/release/swcore
# Optional: the AF_XDP send path's floor.
X=$PWD/target/release/xsktx
for b in "$W" "$G" "$C"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --release -p weft-cli -p weft-bench" >&2; exit 1; }
done
# Benchmark-only tools are installed here, not by .ci/run.
missing=()
for c in iperf3:iperf3 ethtool:ethtool ovs-vswitchd:openvswitch-switch taskset:util-linux python3:python3; do
  command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
for c in iperf3 ethtool ovs-vswitchd ovsdb-server ovsdb-tool ovs-vsctl taskset python3; do
  command -v $c >/dev/null || { echo "missing $c (apt-get install -y iperf3 ethtool openvswitch-switch)" >&2; exit 1; }
done
D=$(mktemp -d /tmp/weft-bench-switch.XXXXXX)
export WEFT_STATE_DIR=$D/state
LAB=swb
NSS=()
PIDS=()
OVS_INST=()
log() { echo "$*" >&2; }

cleanup() {
  set +e
  for i in "${OVS_INST[@]}"; do ovs_stop "$i"; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  "$W" down $LAB >/dev/null 2>&1
  "$W" down swbu >/dev/null 2>&1
  "$W" down swbv >/dev/null 2>&1
  for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$D"
}
trap cleanup EXIT

mkns() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up; }
# veth from host namespace $1 (eth0, address $3) to switch namespace $2 (port $4).
cable() {
  ip link add eth0 netns "$1" type veth peer name "$4" netns "$2"
  ip -n "$1" addr add "$3/24" dev eth0
  ip -n "$2" link set "$4" up
  ip -n "$1" link set eth0 up
}
wait_ping() {
  for _ in $(seq 100); do ip netns exec "$1" ping -c1 -W0.2 "$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "no ping from $1 to $2"; return 1
}

# --- kernel bridge -------------------------------------------------------
mkns wsb-br; mkns wsb-br-h1; mkns wsb-br-h2
ip -n wsb-br link add br0 type bridge
ip -n wsb-br link set br0 up
cable wsb-br-h1 wsb-br 10.99.1.1 p1; cable wsb-br-h2 wsb-br 10.99.1.2 p2
ip -n wsb-br link set p1 master br0; ip -n wsb-br link set p2 master br0

# --- two kernel bridges joined by a veth (the reference for the trunked
# weft case below; this kernel has no bridge VLAN filtering) -------------
mkns wsb-br2a; mkns wsb-br2b; mkns wsb-br2-h1; mkns wsb-br2-h2
for b in a b; do ip -n wsb-br2$b link add br0 type bridge; ip -n wsb-br2$b link set br0 up; done
cable wsb-br2-h1 wsb-br2a 10.99.7.1 p1; cable wsb-br2-h2 wsb-br2b 10.99.7.2 p2
ip link add up0 netns wsb-br2a type veth peer name up0 netns wsb-br2b
for b in a b; do ip -n wsb-br2$b link set up0 up; ip -n wsb-br2$b link set up0 master br0; done
ip -n wsb-br2a link set p1 master br0; ip -n wsb-br2b link set p2 master br0

# --- the send path alone: a veth from wsb-fl (p2) into a host ----------
# (its own pair: weft's datapath holds an AF_XDP socket on its ports'
# queue, which a second one could not bind)
mkns wsb-fl; mkns wsb-fl-h2
cable wsb-fl-h2 wsb-fl 10.99.9.2 p2

# --- Open vSwitch, userspace datapath ----------------------------------
# $1 instance name, $2 its namespace, $3 "tso" or "off".
ovs() {
  local o=$D/$1
  mkdir -p "$o"
  ovsdb-tool create "$o/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  local env=(env OVS_RUNDIR="$o" OVS_DBDIR="$o" OVS_LOGDIR="$o")
  ip netns exec "$2" "${env[@]}" ovsdb-server "$o/conf.db" --remote="punix:$o/db.sock" \
    --unixctl="$o/ovsdb-server.ctl" --log-file="$o/ovsdb-server.log" >/dev/null 2>&1 &
  echo $! > "$o/ovsdb.pid"; PIDS+=($!)
  for _ in $(seq 50); do [ -S "$o/db.sock" ] && break; sleep 0.1; done
  local vs=(ovs-vsctl --db="unix:$o/db.sock" --timeout=10)
  "${vs[@]}" --no-wait init
  if [ "$3" = tso ]; then
    "${vs[@]}" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
  fi
  ip netns exec "$2" "${env[@]}" ovs-vswitchd "unix:$o/db.sock" \
    --unixctl="$o/ovs-vswitchd.ctl" --log-file="$o/ovs-vswitchd.log" >/dev/null 2>&1 &
  echo $! > "$o/vswitchd.pid"; PIDS+=($!)
  OVS_INST+=("$1")
  "${vs[@]}" add-br br0 -- set bridge br0 datapath_type=netdev
  "${vs[@]}" add-port br0 p1 -- add-port br0 p2
}
ovs_stop() {
  local o=$D/$1
  ovs-appctl --target="$o/ovs-vswitchd.ctl" exit >/dev/null 2>&1
  ovs-appctl --target="$o/ovsdb-server.ctl" exit >/dev/null 2>&1
  for f in vswitchd ovsdb; do
    [ -f "$o/$f.pid" ] && kill "$(cat "$o/$f.pid")" 2>/dev/null
  done
}
for m in off tso; do
  mkns wsb-ovs-$m; mkns wsb-$m-h1; mkns wsb-$m-h2
  n=$([ $m = off ] && echo 2 || echo 3)
  cable wsb-$m-h1 wsb-ovs-$m 10.99.$n.1 p1; cable wsb-$m-h2 wsb-ovs-$m 10.99.$n.2 p2
  ovs ovs-$m wsb-ovs-$m $m
  if [ $m = off ]; then
    # Without this, TCP does not pass at all: the veth leaves checksums
    # for offload and OVS's AF_PACKET ports never finish them.
    for h in h1 h2; do ip netns exec wsb-off-$h ethtool -K eth0 tx off tso off gso off >/dev/null; done
  fi
done

# --- TAP to TAP: swgen tapfwd, TAPs moved into the hosts as eth0 -------
mkns wsb-tap; mkns wsb-tap-h1; mkns wsb-tap-h2
ip netns exec wsb-tap "$G" tapfwd --a tpa --b tpb --secs 3600 >"$D/tapfwd.log" 2>&1 &
TAP_PID=$!; PIDS+=($TAP_PID)
for _ in $(seq 50); do ip -n wsb-tap link show tpb >/dev/null 2>&1 && break; sleep 0.1; done
for h in 1 2; do
  t=$([ $h = 1 ] && echo tpa || echo tpb)
  ip -n wsb-tap link set $t netns wsb-tap-h$h
  ip -n wsb-tap-h$h link set $t name eth0
  ip -n wsb-tap-h$h addr add 10.99.5.$h/24 dev eth0
  ip -n wsb-tap-h$h link set eth0 up
done

# --- weft ---------------------------------------------------------------
cat > "$D/lab.toml" <<EOT
name = "$LAB"
[nodes.sw]
kind = "switch"
fdb_size = 200000
[nodes.h1.interfaces.eth0]
addresses = ["10.99.4.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.99.4.2/24"]
[[links]]
endpoints = ["h1:eth0", "sw:p1"]
[[links]]
endpoints = ["h2:eth0", "sw:p2"]
EOT
"$W" up --quiet "$D/lab.toml" >/dev/null
WEFT_PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$WEFT_STATE_DIR/labs/$LAB/datapath.json")
# The same switch with its kernel fast path off: every frame through the
# AF_PACKET datapath.
LAB2=swbu
sed -e "s/^name = .*/name = \"$LAB2\"/" -e "s/10\.99\.4\./10.99.6./" "$D/lab.toml" > "$D/lab2.toml"
WEFT_SWITCH_FASTPATH=off "$W" up --quiet "$D/lab2.toml" >/dev/null
WEFT2_PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$WEFT_STATE_DIR/labs/$LAB2/datapath.json")

# Trunked and several VLANs: two weft switches joined by a trunk of VLANs
# 10 and 20, h1 and h2 in VLAN 10 (tagged on the trunk), g1 and g2 in 20;
# on the tc BPF path (docs/switch.md).
LAB3=swbv
cat > "$D/lab3.toml" <<EOT
name = "$LAB3"
[nodes.sw1]
kind = "switch"
[nodes.sw1.interfaces.p1]
vlan = 10
[nodes.sw1.interfaces.q1]
vlan = 20
[nodes.sw1.interfaces.trunk]
trunk = [10, 20]
[nodes.sw2]
kind = "switch"
[nodes.sw2.interfaces.p2]
vlan = 10
[nodes.sw2.interfaces.q2]
vlan = 20
[nodes.sw2.interfaces.trunk]
trunk = [10, 20]
[nodes.h1.interfaces.eth0]
addresses = ["10.99.8.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.99.8.2/24"]
[nodes.g1.interfaces.eth0]
addresses = ["10.99.8.11/24"]
[nodes.g2.interfaces.eth0]
addresses = ["10.99.8.12/24"]
[[links]]
endpoints = ["sw1:trunk", "sw2:trunk"]
[[links]]
endpoints = ["h1:eth0", "sw1:p1"]
[[links]]
endpoints = ["g1:eth0", "sw1:q1"]
[[links]]
endpoints = ["h2:eth0", "sw2:p2"]
[[links]]
endpoints = ["g2:eth0", "sw2:q2"]
EOT
"$W" up --quiet "$D/lab3.toml" >/dev/null
WEFT3_PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$WEFT_STATE_DIR/labs/$LAB3/datapath.json")
"$W" status $LAB3 --json | python3 -c '
import json,sys
for s in json.load(sys.stdin)[0]["switches"]:
    assert s["fastpath"].startswith("on (tc BPF"), s["fastpath"]' \
  || { log "the trunked weft switches are not on the tc BPF path"; exit 1; }

# name | host1 ns | host2 ns | host2 address | CPU pids | counted "ns:if:stat" list
SETUPS=(bridge ovs-off ovs-tso tap weft-user weft bridge2 weft-vlan)
# ONLY="bridge2 weft-vlan" measures those rows alone (the others print n/a).
if [ -n "${ONLY:-}" ]; then read -r -a SETUPS <<<"$ONLY"; fi
declare -A H1 H2 IP2 CPU CNT
H1[bridge]=wsb-br-h1; H2[bridge]=wsb-br-h2; IP2[bridge]=10.99.1.2; CPU[bridge]=""
CNT[bridge]="wsb-br:p1:tx_packets wsb-br:p2:tx_packets"
for m in off tso; do
  n=$([ $m = off ] && echo 2 || echo 3)
  H1[ovs-$m]=wsb-$m-h1; H2[ovs-$m]=wsb-$m-h2; IP2[ovs-$m]=10.99.$n.2
  CPU[ovs-$m]=$(cat "$D/ovs-$m/vswitchd.pid")
  CNT[ovs-$m]="wsb-ovs-$m:p1:tx_packets wsb-ovs-$m:p2:tx_packets"
done
H1[tap]=wsb-tap-h1; H2[tap]=wsb-tap-h2; IP2[tap]=10.99.5.2; CPU[tap]=$TAP_PID
CNT[tap]="wsb-tap-h1:eth0:rx_packets wsb-tap-h2:eth0:rx_packets"
H1[weft]=weft-$LAB.h1; H2[weft]=weft-$LAB.h2; IP2[weft]=10.99.4.2; CPU[weft]=$WEFT_PID
CNT[weft]="weft-$LAB.sw:p1:tx_packets weft-$LAB.sw:p2:tx_packets"
H1[weft-user]=weft-$LAB2.h1; H2[weft-user]=weft-$LAB2.h2; IP2[weft-user]=10.99.6.2; CPU[weft-user]=$WEFT2_PID
CNT[weft-user]="weft-$LAB2.sw:p1:tx_packets weft-$LAB2.sw:p2:tx_packets"
H1[bridge2]=wsb-br2-h1; H2[bridge2]=wsb-br2-h2; IP2[bridge2]=10.99.7.2; CPU[bridge2]=""
CNT[bridge2]="wsb-br2a:p1:tx_packets wsb-br2b:p2:tx_packets"
H1[weft-vlan]=weft-$LAB3.h1; H2[weft-vlan]=weft-$LAB3.h2; IP2[weft-vlan]=10.99.8.2; CPU[weft-vlan]=$WEFT3_PID
CNT[weft-vlan]="weft-$LAB3.sw1:p1:tx_packets weft-$LAB3.sw2:p2:tx_packets"
for s in "${SETUPS[@]}"; do wait_ping "${H1[$s]}" "${IP2[$s]}"; done

TICK=$(getconf CLK_TCK)
# utime+stime of the given PIDs, in clock ticks.
cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
softirq() { awk '/^cpu / {print $8}' /proc/stat; }
frames() {
  local t=0 x
  for x in $1; do
    IFS=: read -r ns ifc st <<<"$x"
    t=$((t + $(ip netns exec "$ns" cat /sys/class/net/$ifc/statistics/$st)))
  done
  echo $t
}
R=$D/results
: > "$R"
rec() { echo "$1 $2 $3" >> "$R"; }

# Runs "$@" (the load) and records CPU per frame for setup $1 as metric $2.
with_cpu() {
  local s=$1 metric=$2; shift 2
  local c0 f0 q0 c1 f1 q1
  c0=$(cpu ${CPU[$s]}); f0=$(frames "${CNT[$s]}"); q0=$(softirq)
  "$@"
  c1=$(cpu ${CPU[$s]}); f1=$(frames "${CNT[$s]}"); q1=$(softirq)
  local df=$((f1 - f0))
  if [ -n "${CPU[$s]}" ]; then
    rec "$s" "$metric" "$(awk -v c=$((c1 - c0)) -v f=$df -v t=$TICK 'BEGIN { if (f > 0) printf "%.3f", c / t / f * 1e6; else print "nan" }')"
  fi
  rec "$s" "$metric-softirq" "$(awk -v c=$((q1 - q0)) -v f=$df -v t=$TICK 'BEGIN { if (f > 0) printf "%.3f", c / t / f * 1e6; else print "nan" }')"
  rec "$s" "$metric-frames" "$df"
}

tcp() {
  local s=$1
  ip netns exec "${H2[$s]}" iperf3 -s -1 -A 1 >/dev/null 2>&1 & local sp=$!
  sleep 0.3
  local g
  g=$(ip netns exec "${H1[$s]}" timeout $((T + 10)) iperf3 -c "${IP2[$s]}" -A 0 -t "$T" -J \
      | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null || echo 0)
  kill $sp 2>/dev/null || true; wait $sp 2>/dev/null || true
  rec "$s" tcp "$g"
}
udp_iperf() {
  local s=$1
  ip netns exec "${H2[$s]}" iperf3 -s -1 -A 1 >/dev/null 2>&1 & local sp=$!
  sleep 0.3
  local k
  k=$(ip netns exec "${H1[$s]}" timeout $((T + 10)) iperf3 -c "${IP2[$s]}" -A 0 -u -b 0 -l 64 -t "$T" -J \
      | python3 -c '
import json,sys
e = json.load(sys.stdin)["end"]["sum"]
print("%.1f" % ((e["packets"] - e["lost_packets"]) / e["seconds"] / 1e3))' 2>/dev/null || echo 0)
  kill $sp 2>/dev/null || true; wait $sp 2>/dev/null || true
  rec "$s" udp-iperf "$k"
}
udp_gen() {
  local s=$1 mac
  mac=$(ip netns exec "${H2[$s]}" cat /sys/class/net/eth0/address)
  # SENDERS=2: one sender pinned to each CPU (a kernel path forwards in
  # the sender's softirq, so one sender's CPU caps what it can carry);
  # the receiver then runs where the scheduler puts it.
  local pin=1 i sps=()
  [ "$SENDERS" -gt 1 ] && pin=0-1
  ip netns exec "${H2[$s]}" taskset -c $pin "$G" recv --port 9000 --secs $((T + 5)) >"$D/recv.out" 2>&1 & local rp=$!
  sleep 0.3
  for i in $(seq 0 $((SENDERS - 1))); do
    ip netns exec "${H1[$s]}" taskset -c $((i % 2)) "$G" send --ifname eth0 --dst-mac "$mac" \
      --src-ip "${IP2[$s]%.*}.1" --dst-ip "${IP2[$s]}" --port 9000 --secs "$T" >"$D/send$i.out" &
    sps+=($!)
  done
  wait "${sps[@]}" || true
  wait $rp || true
  rec "$s" udp-gen "$(python3 -c 'import json,sys; print("%.1f" % (json.loads(open(sys.argv[1]).read().splitlines()[-1])["pps"] / 1e3))' "$D/recv.out" 2>/dev/null || echo 0)"
  rec "$s" udp-gen-sent "$(python3 -c 'import json,sys; print("%.1f" % (sum(json.load(open(f))["pps"] for f in sys.argv[1:]) / 1e3))' "$D"/send*.out 2>/dev/null || echo 0)"
  # Loss from counts (frames sent, packets received), not from the two
  # rates: each is taken over its own program's time window, which under
  # load can differ by more than the loss itself.
  rec "$s" udp-gen-loss "$(python3 -c '
import json,sys
got = json.loads(open(sys.argv[1]).read().splitlines()[-1])["received"]
sent = sum(json.load(open(f))["sent"] for f in sys.argv[2:])
print("%.3f" % (max(0.0, 100.0 * (1 - got / sent)) if sent else float("nan")))' "$D/recv.out" "$D"/send*.out 2>/dev/null || echo nan)"
  # The generator's and the receiver's own CPU per frame (the model of
  # the best rate any switch could reach: sender + switch + receiver).
  python3 - "$s" "$D/recv.out" "$D"/send*.out >> "$R" <<'PYC' || true
import json, sys
s = sys.argv[1]
got = json.loads(open(sys.argv[2]).read().splitlines()[-1])
sends = [json.loads(open(f).read().splitlines()[-1]) for f in sys.argv[3:]]
sent = sum(x["sent"] for x in sends)
if sent and all("cpu_us" in x for x in sends):
    print(s, "udp-gen-sndcpu", "%.3f" % (sum(x["cpu_us"] for x in sends) / sent))
if got.get("received") and "cpu_us" in got:
    print(s, "udp-gen-rcvcpu", "%.3f" % (got["cpu_us"] / got["received"]))
PYC
  rm -f "$D"/send*.out
}

# 64 B frames offered at a fixed rate $2 (kpps) to setup $1: records what
# arrived of what was sent, as metric udp-paced-$3 (received kpps) and
# udp-paced-$3-loss (percent).
udp_paced() {
  local s=$1 k=$2 label=$3 mac
  mac=$(ip netns exec "${H2[$s]}" cat /sys/class/net/eth0/address)
  ip netns exec "${H2[$s]}" taskset -c 1 "$G" recv --port 9002 --secs $((T + 5)) >"$D/precv.out" 2>&1 & local rp=$!
  sleep 0.3
  ip netns exec "${H1[$s]}" taskset -c 0 "$G" send --ifname eth0 --dst-mac "$mac" \
    --src-ip "${IP2[$s]%.*}.1" --dst-ip "${IP2[$s]}" --port 9002 --secs "$T" \
    --pps "$(awk -v k="$k" 'BEGIN { printf "%d", k * 1000 }')" >"$D/psend.out" || true
  wait $rp || true
  python3 - "$D/psend.out" "$D/precv.out" "$s" "$label" >> "$R" <<'PYP'
import json, sys
s, label = sys.argv[3], sys.argv[4]
try:
    sent = json.loads(open(sys.argv[1]).read().splitlines()[-1])
    got = json.loads(open(sys.argv[2]).read().splitlines()[-1])
except (IndexError, ValueError, OSError, KeyError):
    # Nothing measured counts as everything lost.
    print(s, "udp-paced-" + label + "-loss", "100.00")
    sys.exit(0)
print(s, "udp-paced-" + label, "%.1f" % (got["pps"] / 1e3))
print(s, "udp-paced-" + label + "-offered", "%.1f" % (sent["pps"] / 1e3))
if sent["sent"] > 0:
    print(s, "udp-paced-" + label + "-loss", "%.2f" % max(0.0, 100.0 * (1 - got["received"] / sent["sent"])))
    if "cpu_us" in sent:
        print(s, "udp-paced-" + label + "-sndcpu", "%.3f" % (sent["cpu_us"] / sent["sent"]))
if got["received"] > 0 and "cpu_us" in got:
    print(s, "udp-paced-" + label + "-rcvcpu", "%.3f" % (got["cpu_us"] / got["received"]))
PYP
}

# The send path alone, the floor under any userspace switch on veth
# ports: `swgen send` writes prebuilt 64 B frames (64 per sendmmsg,
# PACKET_QDISC_BYPASS) straight into a veth (p2 in wsb-fl) towards a host,
# flooded, without receiving or deciding anything. The veth delivers
# in the sender's context, so its CPU per frame includes h2's whole
# receive stack, as a switch's sending does. Records setup "txfloor":
# udp-gen (kpps received), udp-gen-cpu (the sender's own CPU µs per frame).
# $1: the setup name to record ("txfloor": swgen's sendmmsg; "txfloor-xdp":
# xsktx, the same frames through an AF_XDP TX ring).
tx_floor() {
  local name=$1 mac cmd
  mac=$(ip netns exec wsb-fl-h2 cat /sys/class/net/eth0/address)
  if [ "$name" = txfloor ]; then
    cmd=("$G" send --ifname p2 --dst-mac "$mac" --src-ip 10.99.9.1 \
      --dst-ip 10.99.9.2 --port 9003 --secs "$T")
  else
    cmd=("$X" p2 "$mac" 10.99.9.1 10.99.9.2 9003 "$T")
  fi
  ip netns exec wsb-fl-h2 taskset -c 1 "$G" recv --port 9003 --secs $((T + 5)) >"$D/frecv.out" 2>&1 & local rp=$!
  sleep 0.3
  python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"))
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' "$D/fsend.out" ip netns exec wsb-fl "${cmd[@]}" >"$D/fcpu.out" || true
  wait $rp || true
  python3 - "$D/fsend.out" "$D/frecv.out" "$D/fcpu.out" "$name" >> "$R" <<'PYF'
import json, sys
n = sys.argv[4]
try:
    sent = json.loads(open(sys.argv[1]).read().splitlines()[-1])
    got = json.loads(open(sys.argv[2]).read().splitlines()[-1])
    cpu = float(open(sys.argv[3]).read())
except (IndexError, ValueError, OSError, KeyError):
    sys.exit(0)
print("%s udp-gen %.1f" % (n, got["pps"] / 1e3))
print("%s udp-gen-sent %.1f" % (n, sent["pps"] / 1e3))
if sent["sent"]:
    print("%s udp-gen-cpu %.3f" % (n, cpu / sent["sent"] * 1e6))
PYF
}

# Memory of weft's datapath with 100,000 learned MACs (first, while the
# hosts' own entries are fresh).
rss() { awk '/^VmRSS/ {print $2}' /proc/$1/status; }
RSS0=$(rss "$WEFT_PID")
mac=$(ip netns exec weft-$LAB.h2 cat /sys/class/net/eth0/address)
fdb() { "$W" status $LAB --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["switches"][0]["fdb_entries"])'; }
# Paced (a burst overflows the port's ring and those sources are lost);
# sent again until all are learned (ageing is 300 s, far longer than this).
FILLS=0
# (Skipped when ONLY leaves weft's row out.)
[[ " ${SETUPS[*]} " == *" weft "* ]] || FILLS=99
while [ "$(fdb)" -lt 100002 ] && [ $FILLS -lt 20 ]; do
  ip netns exec weft-$LAB.h1 "$G" send --ifname eth0 --dst-mac "$mac" --src-ip 10.99.4.1 \
    --dst-ip 10.99.4.2 --port 9001 --srcs 100000 --count 100000 --pps 50000 --secs 10 >/dev/null
  FILLS=$((FILLS + 1))
done
FDB=$(fdb)
RSS1=$(rss "$WEFT_PID")
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
  for s in "${SETUPS[@]}"; do
    log "round $r: $s"
    with_cpu "$s" tcp-cpu tcp "$s"
    with_cpu "$s" udp-iperf-cpu udp_iperf "$s"
    with_cpu "$s" udp-gen-cpu udp_gen "$s"
    if [ "$s" = weft-user ]; then
      log "round $r: the send path alone"
      tx_floor txfloor
      [ -x "$X" ] && tx_floor txfloor-xdp
    fi
  done
done
# Userspace paths offered a paced rate rather than a flood far above what
# any of them forwards: the highest rate each carries losing at most 1 %
# (a search, RFC 2544's throughput), and weft's at twice Open vSwitch's.
med_of() { awk -v s="$1" -v m="$2" '$1 == s && $2 == m { print $3 }' "$R" | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print 0 }'; }
last_of() { awk -v s="$1" -v m="$2" '$1 == s && $2 == m { x = $3 } END { print x + 0 }' "$R"; }
# The searches of all userspace paths advance together, one paced run of
# each per step, so a change in the machine's load between steps hits
# every path alike (as the flooded rounds are interleaved).
declare -A LO HI K
LL=()
for s in ovs-off ovs-tso weft-user; do
  [[ " ${SETUPS[*]} " == *" $s "* ]] || continue
  LO[$s]=0; HI[$s]=$(med_of "$s" udp-gen-sent); K[$s]=$(med_of "$s" udp-gen)
  [ "${HI[$s]%.*}" -gt 0 ] && [ "${K[$s]%.*}" -gt 0 ] && LL+=("$s")
done
for i in $(seq "${SEARCH_STEPS:-6}"); do
  for s in "${LL[@]}"; do
    with_cpu "$s" udp-paced-search-cpu udp_paced "$s" "${K[$s]}" search
    l=$(last_of "$s" udp-paced-search-loss)
    log "lossless search step $i: $s paced at ${K[$s]} kpps: $l % lost"
    if awk -v l="$l" 'BEGIN { exit !(l <= 1.0) }'; then LO[$s]=${K[$s]}; else HI[$s]=${K[$s]}; fi
    K[$s]=$(awk -v a="${LO[$s]}" -v b="${HI[$s]}" 'BEGIN { printf "%.1f", (a + b) / 2 }')
  done
done
for s in "${LL[@]}"; do rec "$s" udp-lossless "${LO[$s]}"; done
if [[ " ${SETUPS[*]} " == *" weft-user "* ]]; then
  ovs=$(printf '%s\n%s\n' "$(med_of ovs-off udp-gen)" "$(med_of ovs-tso udp-gen)" | sort -n | tail -1)
  if [ "${ovs%.*}" -gt 0 ]; then
    for r in $(seq "$ROUNDS"); do
      udp_paced weft-user "$(awk -v o="$ovs" 'BEGIN { print 2 * o }')" ovs2x
    done
  fi
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

"$C" 1 > "$D/core.out"
# KEEP=DIR keeps the raw figures (results, core.out) for a later look.
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$R" "$D/core.out" "$KEEP/"; fi
B=$PWD/target/release/bpfcost
if [ -x "$B" ]; then "$B" > "$D/bpfcost.out" 2>&1 || true; else : > "$D/bpfcost.out"; fi

python3 - "$R" "$D/core.out" "$ROUNDS" "$T" "$LOAD0" "$LOAD1" "$RSS0" "$RSS1" "$FDB" "$WRITE" "$FILLS" "$D/bpfcost.out" <<'PY'
import sys, os, statistics, json, re, subprocess, datetime
res, core, rounds, T, load0, load1, rss0, rss1, fdb, write, fills, bpfcost = sys.argv[1:]
senders = int(os.environ.get("SENDERS", "1"))
v = {}
for line in open(res):
    s, m, x = line.split()
    try:
        v.setdefault((s, m), []).append(float(x))
    except ValueError:
        pass
def med(s, m):
    xs = [x for x in v.get((s, m), []) if x == x]
    return statistics.median(xs) if xs else None
def cell(s, m, f="%.2f"):
    xs = sorted(x for x in v.get((s, m), []) if x == x)
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f % xs[0]
    return (f % statistics.median(xs)) + " (" + (f % xs[0]) + "–" + (f % xs[-1]) + ")"
def cpu(s, m):
    if (s, m) in v:
        return cell(s, m)
    return "n/a (kernel)"
names = {
    "bridge2": "two Linux bridges joined by a veth (kernel; untagged, no VLAN filtering here)",
    "weft-vlan": "**two weft switches joined by a trunk** (VLANs 10 and 20, hosts in 10: tc BPF path, tag pushed and popped)",
    "bridge": "Linux bridge (kernel)",
    "ovs-off": "Open vSwitch netdev, offloads off",
    "ovs-tso": "Open vSwitch netdev, userspace TSO on",
    "tap": "TAP to TAP, IFF_VNET_HDR (swgen tapfwd)",
    "weft-user": "weft switch, fast path off (every frame through the AF_PACKET datapath)",
    "weft": "**weft switch** (default: steady flows on the kernel fast path)",
}
ORDER = ["bridge", "ovs-off", "ovs-tso", "tap", "weft-user", "weft"]
VORDER = ["bridge2", "ovs-off", "ovs-tso", "weft-user", "weft-vlan"]
def ratio(m, s, inv=False):
    a, b = med("weft", m), med(s, m)
    if not a or not b:
        return "-"
    return "%.2fx" % ((b / a) if inv else (a / b))
rows = ["| path | TCP Gbit/s | 64 B UDP kpps, iperf3 | 64 B UDP kpps, swgen | switch process CPU µs per TCP frame | switch process CPU µs per 64 B frame | all softirq µs per 64 B frame | weft / this: TCP | weft / this: swgen kpps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for s in ORDER:
    rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        names[s], cell(s, "tcp"), cell(s, "udp-iperf", "%.0f"), cell(s, "udp-gen", "%.0f"),
        cpu(s, "tcp-cpu"), cpu(s, "udp-gen-cpu"), cell(s, "udp-gen-cpu-softirq"),
        ratio("tcp", s) if s != "weft" else "", ratio("udp-gen", s) if s != "weft" else ""))
sent = ", ".join("%s %.0f" % (s, med(s, "udp-gen-sent") or 0) for s in ORDER + VORDER[:1] + VORDER[-1:])
def loss(s):
    l = med(s, "udp-gen-loss")
    if l is not None:
        return "%.2f %%" % l
    r, o = med(s, "udp-gen"), med(s, "udp-gen-sent")
    if not r or not o:
        return "n/a"
    return "%.1f %%" % max(0.0, 100.0 * (1 - r / o))
def vratio(m, s):
    a, b = med("weft-vlan", m), med(s, m)
    if not a or not b:
        return "-"
    return "%.2fx" % (a / b)
vrows = ["| path | TCP Gbit/s | 64 B UDP kpps, swgen | 64 B offered kpps | 64 B loss | switch process CPU µs per 64 B frame | trunked weft / this: TCP | trunked weft / this: swgen kpps |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
for s in VORDER:
    vrows.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
        names[s], cell(s, "tcp"), cell(s, "udp-gen", "%.0f"), cell(s, "udp-gen-sent", "%.0f"), loss(s),
        cpu(s, "udp-gen-cpu"),
        vratio("tcp", s) if s != "weft-vlan" else "", vratio("udp-gen", s) if s != "weft-vlan" else ""))
def met(a, b, m):
    x, y = med(a, m), med(b, m)
    return x is not None and y is not None and x >= y
targets = []
targets.append("trunked weft >= two bridges on TCP: %s" % ("met" if met("weft-vlan", "bridge2", "tcp") else "NOT met"))
targets.append("on 64 B frames: %s" % ("met" if met("weft-vlan", "bridge2", "udp-gen") else "NOT met"))
lw = loss("weft-vlan"); lb = loss("bridge2")
try:
    lok = float(lw.split()[0]) <= float(lb.split()[0]) + 0.05
except ValueError:
    lok = False
targets.append("64 B loss %s vs the bridges' %s: %s" % (lw, lb, "met" if lok else "NOT met"))
# The userspace path (every frame through the datapath, as on impaired
# ports): at least 2x Open vSwitch on 64 B frames, losing at most 1 % at
# the rate it reports (its lossless rate, from the paced search).
def best(*xs):
    xs = [x for x in xs if x]
    return max(xs) if xs else None
ovs_flood = best(med("ovs-off", "udp-gen"), med("ovs-tso", "udp-gen"))
ovs_ll = best(med("ovs-off", "udp-lossless"), med("ovs-tso", "udp-lossless"))
ovs_any = best(ovs_flood, ovs_ll)
uw = med("weft-user", "udp-gen")
ul = med("weft-user", "udp-lossless")
utarget = []
if uw and ovs_flood:
    utarget.append("flooded, weft forwards %.0f kpps, %.2fx Open vSwitch's best (%.0f)" % (uw, uw / ovs_flood, ovs_flood))
if ul is not None:
    utarget.append("the highest paced rate weft carries losing at most 1 %%: %.0f kpps (Open vSwitch's: %s)" % (
        ul, "%.0f" % ovs_ll if ovs_ll is not None else "n/a"))
    # Two readings: lossless against lossless (like for like), and the
    # strict one, against Open vSwitch's best figure even where it lost
    # most of what it was offered.
    if ovs_ll:
        utarget.append("lossless against lossless %.2fx: target %s" % (
            ul / ovs_ll, "met" if ul >= 2 * ovs_ll else "NOT met"))
    if ovs_any:
        utarget.append("against the best Open vSwitch figure, lossy or not (%.0f), %.2fx: %s" % (
            ovs_any, ul / ovs_any, "met" if ul >= 2 * ovs_any else "NOT met"))
l2 = med("weft-user", "udp-paced-ovs2x-loss")
if l2 is not None:
    utarget.append("offered twice Open vSwitch's flooded rate (%.0f kpps): %.0f arrive, %.2f %% lost" % (
        med("weft-user", "udp-paced-ovs2x-offered") or 0, med("weft-user", "udp-paced-ovs2x") or 0, l2))
# The floor under any userspace switch here: the send path alone.
fl, flc = med("txfloor", "udp-gen"), med("txfloor", "udp-gen-cpu")
xl, xc = med("txfloor-xdp", "udp-gen"), med("txfloor-xdp", "udp-gen-cpu")
oc = [x for x in (med("ovs-off", "udp-gen-cpu"), med("ovs-tso", "udp-gen-cpu")) if x]
wc = med("weft-user", "udp-gen-cpu")
if fl and flc:
    t = "the send path alone (`swgen` straight into a veth towards a host: no receive, no decision) carries %.0f kpps at %.2f µs of CPU per frame" % (fl, flc)
    if xl and xc:
        t += "; through an AF_XDP TX ring instead (`xsktx`, as weft's ports send plain frames) %.0f kpps at %.2f µs" % (xl, xc)
    if wc and oc:
        d = wc - (xc if xc else flc)
        # The datapath can come out below the floor (measured by another
        # program, which batches differently): say so, not "-1.4 above".
        t += "; weft's datapath takes %.2f µs a frame (%.2f %s the %s floor), Open vSwitch's %.2f; twice Open vSwitch's rate at the same CPU share needs at most %.2f µs a frame" % (
            wc, abs(d), "above" if d >= 0 else "below", "AF_XDP" if xc else "sendmmsg", min(oc), min(oc) / 2)
    utarget.append(t)
# The model: a frame costs CPU in three processes (the generator, whose
# sends also run the switch's receive into its port's socket; the switch,
# whose sends run the receiving host's stack; the receiver), so with the
# three alone on the 2 CPUs a path carries at most
# min(2 / (snd + sw + rcv), 1 / max(snd, sw, rcv)) frames per µs; on a
# loaded machine, where each gets about the same share of a CPU, the
# dearest of the three decides: share / max(snd, sw, rcv). The best any
# userspace switch could do here: weft's generator and receiver costs,
# and for the switch the AF_XDP send floor plus the core's decision.
def costs(p):
    c = (med(p, "udp-gen-sndcpu"), med(p, "udp-gen-cpu"), med(p, "udp-gen-rcvcpu"))
    return c if all(c) else None
def bounds(c):
    return min(2.0 / sum(c), 1.0 / max(c)) * 1e3, 1.0 / max(c)
ovs_c = [(p, costs(p)) for p in ("ovs-off", "ovs-tso") if costs(p)]
wc3 = costs("weft-user")
core_ns = next((1e9 / json.loads(l)["fps"] for l in open(core) if '"learned unicast, 2 ports"' in l), 100.0)
if ovs_c and wc3 and xc:
    ob = max(ovs_c, key=lambda pc: bounds(pc[1])[0])
    bc = (wc3[0], xc + core_ns / 1e3, wc3[2])
    m = ["The model (CPU µs per 64 B frame, flooded medians: generator + switch + receiver):"]
    for name, c in (("Open vSwitch (" + {"ovs-off": "offloads off", "ovs-tso": "userspace TSO"}[ob[0]] + ")", ob[1]), ("weft", wc3), ("any userspace switch at the AF_XDP send floor", bc)):
        m.append("%s %.2f + %.2f + %.2f = %.2f: alone on 2 CPUs at most %.0f kpps" % (name, c[0], c[1], c[2], sum(c), bounds(c)[0]))
    m.append("so against Open vSwitch, weft can reach %.2fx on an idle machine and %.2fx on a loaded one (equal shares: the dearest process decides), and any userspace switch %.2fx and %.2fx" % (
        bounds(wc3)[0] / bounds(ob[1])[0], bounds(wc3)[1] / bounds(ob[1])[1],
        bounds(bc)[0] / bounds(ob[1])[0], bounds(bc)[1] / bounds(ob[1])[1]))
    utarget.append(m[0] + " " + "; ".join(m[1:]))
brow = []
try:
    bl = [json.loads(l) for l in open(bpfcost) if l.startswith("{")]
except OSError:
    bl = []
if bl:
    brow = ["| tc BPF switch, one frame (`bpfcost`, BPF_PROG_TEST_RUN) | classifier ns | socket filter ns |", "|---|---:|---:|"]
    for c in bl:
        brow.append("| %s | %d | %d |" % (c["case"], c["tc_ns"], c["socket_ns"]))
corel = [json.loads(l) for l in open(core)]
crow = ["| switch core alone (no I/O, `swcore`) | frames/s | ns per frame |", "|---|---:|---:|"]
mem = None
for c in corel:
    if c["case"] == "memory":
        mem = c
        continue
    crow.append("| %s | %.2f M | %.0f |" % (c["case"], c["fps"] / 1e6, 1e9 / c["fps"]))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
out = f"""One run of `bench/switch.sh {rounds} {T}` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit},
kernel {kernel}, 2 cores; load average {load0} at the start, {load1} at the end).
{rounds} interleaved rounds of {T} s per figure: median (min–max). Sender pinned to CPU 0, receiver
to CPU 1, the switch process unpinned; `swgen`: {senders} sender(s), one pinned to each CPU{" (the receiver unpinned)" if senders > 1 else ""}.

{chr(10).join(rows)}

Trunked, several VLANs (issue #17): h1 -> h2 across two switches joined by a trunk carrying VLANs
10 and 20, against the same shape in kernel bridges (untagged: this kernel has no VLAN filtering
and no 802.1Q devices) and the one-switch Open vSwitch rows above. Targets: {"; ".join(targets)}.

{chr(10).join(vrows)}

{chr(10).join(brow)}

The userspace path (issue #17: every frame through the datapath, as on impaired ports; the "fast path
off" row): {"; ".join(utarget) if utarget else "not measured"}.

- TCP: one iperf3 stream h1 -> h2, default offloads except the "offloads off" row (there
  `ethtool -K eth0 tx off tso off gso off` on both hosts, without which that datapath passes no TCP).
- 64 B UDP: 64-byte payloads, packets/s counted by the receiving socket. iperf3 sends one packet
  per system call and is itself the limit near 500 kpps; `swgen send` (bench/src/bin/swgen.rs)
  writes prebuilt frames to an AF_PACKET socket with PACKET_QDISC_BYPASS, 64 per `sendmmsg`.
  Offered kpps by path: {sent}. Loss: 1 - packets received / frames sent, from the two
  programs' counts (not their rates, which each take over its own time window).
- CPU per frame: utime+stime of the switch process (ovs-vswitchd, swgen tapfwd, weft's datapath)
  from /proc over the run, divided by the frames sent out of the switch's ports (TCP: GSO frames of
  up to 64 KiB count as one). It includes softirq work that ran in the process's system calls
  (for a veth that is the receiving host's whole stack). The kernel bridge and weft's fast path
  forward in softirq, charged to whoever runs then; the softirq column is all softirq time of the
  machine per frame (both hosts' own stack work included), comparable across rows.

{chr(10).join(crow)}

Memory: weft's datapath held {fdb} learned MACs (100,000 sources and the 2 hosts, `fdb_size =
200000`) after {fills} round(s) of `swgen send --srcs 100000 --count 100000 --pps 50000`: RSS {int(rss0)/1024:.1f} MiB
before, {int(rss1)/1024:.1f} MiB after.
The core alone: {mem['bytes']/1048576:.1f} MiB of heap for a switch with {mem['macs']} MACs ({mem['bytes_per_mac']:.0f} bytes per MAC, {mem['empty_bytes']/1024:.0f} KiB empty)."""
print(out)
if write == "1":
    p = "docs/performance.md"
    s = open(p).read()
    b = "<!-- bench:switch:begin -->\n" + out + "\n<!-- bench:switch:end -->"
    if "<!-- bench:switch:begin -->" in s:
        s = re.sub(r"<!-- bench:switch:begin -->.*?<!-- bench:switch:end -->", lambda m: b, s, flags=re.S)
    else:
        s = s.rstrip("\n") + "\n\n## Userspace switch\n\n" + b + "\n"
    open(p, "w").write(s)
PY
