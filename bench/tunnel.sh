#!/bin/bash
# TCP throughput and added latency through weft's tunnel (TUN and TAP) and
# through wireguard-go, OpenVPN and VTun, all between the same two lab
# namespaces over the same underlay veth, in one run. Prints a Markdown
# table and, with --write, puts it into docs/performance.md between the
# bench:tunnel markers.
#
#   apt-get install -y iperf3 wireguard-go wireguard-tools openvpn vtun
#   cargo build --release -p weft-cli && sudo bench/tunnel.sh [--write] [SECONDS]
#
# Everything runs in the lab's two namespaces; every process this script
# starts is killed by its PID; the lab is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=0; [ "${1:-}" = --write ] && { WRITE=1; shift; }
T=${1:-5}
W=$PWD/target/release/weft
export WEFT_STATE_DIR=$(mktemp -d /tmp/weft-bench-tunnel.XXXXXX)
D=$WEFT_STATE_DIR
LAB=tbench
N1=weft-$LAB-m1; N2=weft-$LAB-m2
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  "$W" down $LAB >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
cat > "$D/lab.toml" <<EOT
name = "$LAB"
[nodes.m1.interfaces.eth0]
addresses = ["10.77.0.1/24"]
[nodes.m2.interfaces.eth0]
addresses = ["10.77.0.2/24"]
[[links]]
endpoints = ["m1:eth0", "m2:eth0"]
EOT
"$W" up "$D/lab.toml" >/dev/null
in1() { ip netns exec $N1 "$@"; }
in2() { ip netns exec $N2 "$@"; }
bg1() { ip netns exec $N1 "$@" >>"$D/log" 2>&1 & PIDS+=($!); }
bg2() { ip netns exec $N2 "$@" >>"$D/log" 2>&1 & PIDS+=($!); }
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; PIDS=(); }
wait_ping() { for _ in $(seq 50); do in1 ping -c1 -W0.2 "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

# Gbit/s of one TCP stream m1 -> m2 for $T s, and the average ping RTT (ms).
measure() {
  local addr=$1
  in2 iperf3 -s -1 -B "$addr" >/dev/null 2>&1 & local sp=$!
  sleep 0.3
  local gbps
  gbps=$(in1 iperf3 -c "$addr" -t "$T" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null || echo 0)
  kill $sp 2>/dev/null || true; wait $sp 2>/dev/null || true
  local rtt
  rtt=$(in1 ping -q -c 200 -i 0.005 "$addr" | awk -F/ '/^rtt/ {print $5}')
  echo "$gbps $rtt"
}

declare -A RES
RES[underlay]=$(measure 10.77.0.2)

# weft, TUN and TAP.
"$W" keygen "$D/a.key" >/dev/null; "$W" keygen "$D/b.key" >/dev/null
for mode in tun tap; do
  bg1 "$W" tunnel --dev wt0 --mode $mode --key "$D/a.key" --peer-key "$(cat "$D/b.pub")" --peer 10.77.0.2:5000 --address 10.9.0.1/24
  bg2 "$W" tunnel --dev wt0 --mode $mode --key "$D/b.key" --peer-key "$(cat "$D/a.pub")" --address 10.9.0.2/24
  wait_ping 10.9.0.2 || { echo "weft $mode did not come up" >&2; exit 1; }
  RES["weft $mode"]=$(measure 10.9.0.2)
  stop_all
done

# wireguard-go (userspace WireGuard; the kernel module is not used).
if command -v wireguard-go >/dev/null && command -v wg >/dev/null; then
  # Distinct names: the control sockets (/var/run/wireguard/NAME.sock)
  # are shared by all namespaces.
  (umask 077; wg genkey > "$D/w1"; wg genkey > "$D/w2")
  bg1 wireguard-go -f wgb1
  bg2 wireguard-go -f wgb2
  sleep 1
  in1 wg set wgb1 private-key "$D/w1" listen-port 51820 peer "$(wg pubkey < "$D/w2")" allowed-ips 10.9.2.0/24 endpoint 10.77.0.2:51820
  in2 wg set wgb2 private-key "$D/w2" listen-port 51820 peer "$(wg pubkey < "$D/w1")" allowed-ips 10.9.2.0/24
  in1 ip addr add 10.9.2.1/24 dev wgb1; in1 ip link set wgb1 mtu 1420 up
  in2 ip addr add 10.9.2.2/24 dev wgb2; in2 ip link set wgb2 mtu 1420 up
  wait_ping 10.9.2.2 && RES[wireguard-go]=$(measure 10.9.2.2)
  stop_all
fi

# OpenVPN in static-key mode (deprecated but the one without a PKI):
# AES-256-CBC + HMAC-SHA256, UDP, no compression.
if command -v openvpn >/dev/null; then
  openvpn --genkey secret "$D/ovpn.key" 2>/dev/null
  common=(--dev ovpn0 --dev-type tun --proto udp --port 1194 --cipher AES-256-CBC --auth SHA256 --verb 1)
  bg2 openvpn "${common[@]}" --ifconfig 10.9.3.2 10.9.3.1 --secret "$D/ovpn.key" 1
  bg1 openvpn "${common[@]}" --ifconfig 10.9.3.1 10.9.3.2 --secret "$D/ovpn.key" 0 --remote 10.77.0.2
  wait_ping 10.9.3.2 && RES[openvpn]=$(measure 10.9.3.2)
  stop_all
fi

# VTun, UDP, encryption on (its Blowfish), no compression.
if command -v vtund >/dev/null; then
  for side in 1 2; do
    other=$((3 - side))
    cat > "$D/vtun$side.conf" <<EOT
options { port 5000; ip /sbin/ip; }
bench {
  passwd benchsecret; type tun; proto udp; encrypt yes; compress no; keepalive yes;
  up { ip "addr add 10.9.4.$side peer 10.9.4.$other dev %%"; ip "link set %% up"; };
}
EOT
  done
  # VTun's Blowfish is in OpenSSL 3's legacy provider; without it vtund
  # crashes at the first encrypted packet.
  cat > "$D/openssl.cnf" <<EOT
openssl_conf = init
[init]
providers = prov
[prov]
default = def
legacy = leg
[def]
activate = 1
[leg]
activate = 1
EOT
  bg2 env OPENSSL_CONF="$D/openssl.cnf" vtund -n -s -f "$D/vtun2.conf"
  sleep 0.5
  bg1 env OPENSSL_CONF="$D/openssl.cnf" vtund -n -f "$D/vtun1.conf" bench 10.77.0.2
  wait_ping 10.9.4.2 && RES[vtun]=$(measure 10.9.4.2)
  stop_all
fi

base_rtt=$(echo "${RES[underlay]}" | cut -d' ' -f2)
wt=$(echo "${RES[weft tun]}" | cut -d' ' -f1)
table="| path | TCP throughput | weft TUN / this | ping RTT | added RTT |
|---|---:|---:|---:|---:|"
for k in underlay "weft tun" "weft tap" wireguard-go openvpn vtun; do
  v=${RES[$k]:-}
  if [ -z "$v" ]; then table+=$'\n'"| $k | not run | | | |"; continue; fi
  set -- $v
  ratio=$(awk -v a="$wt" -v b="$1" 'BEGIN { if (b > 0) printf "%.2fx", a/b; else print "-" }')
  added=$(awk -v a="$2" -v b="$base_rtt" 'BEGIN { printf "%+.3f ms", a-b }')
  table+=$'\n'"| $k | $1 Gbit/s | $ratio | $2 ms | $added |"
done
echo "$table"
if [ $WRITE = 1 ]; then
  block="<!-- bench:tunnel:begin -->
One run of \`bench/tunnel.sh $T\` on this 2-core machine ($(date -u +%Y-%m-%d)): one TCP
stream (iperf3, $T s) m1 -> m2 and 200 pings, between two namespaces over one veth.

$table

Rows marked not run: the program did not bring its tunnel up within 10 s here
(Debian's vtund 3.0.4 client ended with a segmentation fault here, also
with OpenSSL's legacy provider enabled for its Blowfish; not investigated
further). The issue's floor is
weft >= 3x OpenVPN and VTun and >= wireguard-go; no GSO/GRO or TUN
offload is used yet, and the 2 cores are shared with other work, so runs
vary by about 20%.
<!-- bench:tunnel:end -->"
  python3 - "$block" <<'PY'
import sys, re
p = "docs/performance.md"
s = open(p).read()
b = sys.argv[1]
if "<!-- bench:tunnel:begin -->" in s:
    s = re.sub(r"<!-- bench:tunnel:begin -->.*?<!-- bench:tunnel:end -->", lambda m: b, s, flags=re.S)
else:
    s = s.rstrip("\n") + "\n\n## Tunnel\n\n" + b + "\n"
open(p, "w").write(s)
PY
fi
