#!/bin/bash
# Interleaved A/B of weft tunnel builds (or settings) in one lab: each
# VARIANT gets its own TUN tunnel between the same two namespaces, all up
# at once, and each round measures every variant in turn (rotating order):
# 200 pings 5 ms apart (average, median, largest, how many over 5 ms, and
# the underlay's just after), the voluntary context switches of both tunnel
# processes per ping, and with KPPS > 0 also 64-byte UDP paced at KPPS
# thousand packets/s for 4 s (received, lost, the sending TUN's tx_dropped,
# the receiver's UdpRcvbufErrors) and one TCP stream for 4 s (Gbit/s).
#
#   sudo bench/tunnel-ab.sh ROUNDS KPPS VARIANT...
#
# VARIANT: a weft binary, optionally with one environment setting for it
# (BIN:NAME=VALUE) and flags for both its ends (BIN@FLAG,FLAG, e.g.
# BIN@--cipher=chacha20-poly1305), or `underlay` for the bare veth. Copy each build to its
# own file first (cargo replaces target/release/weft). The lab is tun-ab,
# or $WEFT_BENCH_LAB when set; everything started is killed by PID and the
# lab removed at the end. Prints one line per measurement; compare the
# variants within a run (the machine's load moves every figure).
set -uo pipefail
cd "$(dirname "$0")/.."
R=${1:-3}; KPPS=${2:-0}; shift 2
W=$PWD/target/release/weft
[ -x "$W" ] || { echo "build first: cargo build --release -p weft-cli" >&2; exit 1; }
export WEFT_STATE_DIR=$(mktemp -d /tmp/weft-bench-tunnel-ab.XXXXXX)
D=$WEFT_STATE_DIR; LAB=${WEFT_BENCH_LAB:-tun-ab}
N1=weft-$LAB.m1; N2=weft-$LAB.m2
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; sleep 0.5; "$W" down $LAB >/dev/null 2>&1; rm -rf "$D"; }
trap cleanup EXIT
cat > "$D/lab.toml" <<EOT
name = "$LAB"
[nodes.m1.interfaces.eth0]
addresses = ["10.78.0.1/24"]
[nodes.m2.interfaces.eth0]
addresses = ["10.78.0.2/24"]
[[links]]
endpoints = ["m1:eth0", "m2:eth0"]
EOT
"$W" up "$D/lab.toml" >/dev/null || exit 1
"$W" keygen "$D/a.key" >/dev/null; "$W" keygen "$D/b.key" >/dev/null
i=0; VS=(); declare -A P1 P2 ADDR
for spec in "$@"; do
  if [ "$spec" = underlay ]; then ADDR[$i]=10.78.0.2; P1[$i]=; P2[$i]=; VS+=($i); i=$((i+1)); continue; fi
  flags=; [[ $spec == *@* ]] && { flags=${spec#*@}; flags=${flags//,/ }; spec=${spec%%@*}; }
  bin=${spec%%:*}; env=; [[ $spec == *:* ]] && env=${spec#*:}
  port=$((5200 + i)); net=10.9.$((50 + i))
  ip netns exec $N1 env $env "$bin" tunnel $flags --dev wab$i --mode tun --listen $port --key "$D/a.key" --peer-key "$(cat "$D/b.key.pub")" --peer 10.78.0.2:$port --address $net.1/24 --status "$D/w$i-1.json" >>"$D/log" 2>&1 & P1[$i]=$!; PIDS+=($!)
  ip netns exec $N2 env $env "$bin" tunnel $flags --dev wab$i --mode tun --listen $port --key "$D/b.key" --peer-key "$(cat "$D/a.key.pub")" --address $net.2/24 --status "$D/w$i-2.json" >>"$D/log" 2>&1 & P2[$i]=$!; PIDS+=($!)
  ADDR[$i]=$net.2; VS+=($i); i=$((i+1))
done
for v in "${VS[@]}"; do for _ in $(seq 50); do ip netns exec $N1 ping -c1 -W0.2 ${ADDR[$v]} >/dev/null 2>&1 && break; sleep 0.2; done; done
csw() { local s=0; for p in "$@"; do for f in /proc/$p/task/*/status; do s=$((s + $(awk '/^voluntary_ctxt/ {print $2}' $f))); done; done; echo $s; }
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
n=${#VS[@]}
for r in $(seq 0 $((R-1))); do
  for j in $(seq 0 $((n-1))); do
    v=${VS[$(((j + r) % n))]}; a=${ADDR[$v]}
    c0=$(csw ${P1[$v]} ${P2[$v]})
    rt=$(ip netns exec $N1 ping -c 200 -i 0.005 $a | python3 -c '
import sys,re,statistics as st
t=[float(m.group(1)) for l in sys.stdin for m in [re.search(r"time=([0-9.]+)",l)] if m]
print("avg %.3f med %.3f max %.1f >5ms %d" % (st.mean(t), st.median(t), max(t), sum(x > 5 for x in t)) if t else "none")')
    c1=$(csw ${P1[$v]} ${P2[$v]})
    ur=$(ip netns exec $N1 ping -c 200 -i 0.005 10.78.0.2 | python3 -c '
import sys,re,statistics as st
t=[float(m.group(1)) for l in sys.stdin for m in [re.search(r"time=([0-9.]+)",l)] if m]
print("avg %.3f med %.3f" % (st.mean(t), st.median(t)) if t else "none")')
    out="v$v r$r rtt $rt (underlay $ur) csw/ping $(awk -v a=$c0 -v b=$c1 'BEGIN{printf "%.2f", (b-a)/200}')"
    if [ "$KPPS" != 0 ]; then
      rb0=$(ip netns exec $N2 nstat -az UdpRcvbufErrors | awk '/UdpRcvbufErrors/ {print $2}')
      d0=$(ip netns exec $N1 cat /sys/class/net/wab$v/statistics/tx_dropped 2>/dev/null || echo 0)
      pt=$((6000 + r * 20 + v * 2))
      ip netns exec $N2 iperf3 -s -1 -p $pt -B $a >/dev/null 2>&1 & sp=$!; sleep 0.3
      x=$(ip netns exec $N1 iperf3 -p $pt -c $a -u -b $((KPPS*1000*64*8)) -l 64 -t 4 -J 2>/dev/null | tee $D/last.json | python3 -c '
import json,sys
e = json.load(sys.stdin)["end"]["sum"]
print("%.1f kpps %.2f%%" % ((e["packets"] - e["lost_packets"]) / e["seconds"] / 1e3, 100.0 * e["lost_packets"] / max(e["packets"], 1)))' 2>/dev/null)
      wait $sp
      [ -n "$x" ] || { grep -m1 '"error"' $D/last.json; }
      d1=$(ip netns exec $N1 cat /sys/class/net/wab$v/statistics/tx_dropped 2>/dev/null || echo 0)
      rbe=$(ip netns exec $N2 nstat -az UdpRcvbufErrors | awk '/UdpRcvbufErrors/ {print $2}')
      out+=" | 64B@${KPPS}k: $x tundrop $((d1-d0)) rcvbuf $((rbe-rb0))"
      ip netns exec $N2 iperf3 -s -1 -p $((pt + 1)) -B $a >/dev/null 2>&1 & sp=$!; sleep 0.3
      tp=$(ip netns exec $N1 iperf3 -p $((pt + 1)) -c $a -t 4 -J 2>/dev/null | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null)
      wait $sp
      out+=" | tcp $tp"
    fi
    echo "$out"
  done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
