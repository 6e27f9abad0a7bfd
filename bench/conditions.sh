#!/bin/bash
# Impairment under load, on a wire (an impaired link between two hosts,
# docs/conditions.md): TCP through a 50 ms, 100 Mbit/s link (iperf3, one
# stream, the first 3 s omitted as slow start), and the delay the wire and
# its impairment queue add of their own at 10,000 packets/s (one-way
# delays measured by `owd`, sender and receiver in one process on one
# clock), against a plain veth. Prints a Markdown table and, with --write,
# puts it into docs/performance.md between the bench:conditions markers.
#
#   apt-get install -y iperf3
#   cargo build --release -p weft-cli -p weft-bench
#   sudo bench/conditions.sh [--write] [ROUNDS] [SECONDS]
#
# Everything runs in weft labs of its own (cb0, cb1, cb2, after
# $LAB_PREFIX when set, so that runs beside others do not meet); every process
# it starts is stopped by its PID, every load is bounded in time, and the
# labs are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=0; [ "${1:-}" = --write ] && { WRITE=1; shift; }
ROUNDS=${1:-3}
T=${2:-10}
BIN=${BIN:-$PWD/target/release}
W=$BIN/weft
O=$BIN/owd
for b in "$W" "$O"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --release -p weft-cli -p weft-bench" >&2; exit 1; }
done
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3 >/dev/null
command -v iperf3 >/dev/null || { echo "missing iperf3 (apt-get install -y iperf3)" >&2; exit 1; }
L0=${LAB_PREFIX:-}cb0; L1=${LAB_PREFIX:-}cb1; L2=${LAB_PREFIX:-}cb2
D=$(mktemp -d /tmp/weft-bench-cond.XXXXXX)
export WEFT_STATE_DIR=$D/state
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for l in "$L0" "$L1" "$L2"; do "$W" down "$l" >/dev/null 2>&1 || true; done
  rm -rf "$D"
}
trap cleanup EXIT

# lab NAME IMPAIR: two hosts on one veth link, impaired when IMPAIR is set.
lab() {
  local imp=""
  [ -n "$2" ] && imp="impair = $2"
  cat > "$D/$1.toml" <<TOML
name = "$1"
[nodes.h1.interfaces.eth0]
addresses = ["10.72.0.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.72.0.2/24"]
[[links]]
endpoints = ["h1:eth0", "h2:eth0"]
$imp
TOML
  "$W" up -q "$D/$1.toml"
  # ARP resolved before anything is timed.
  "$W" ping "$1" h1 10.72.0.2 -c 1 >/dev/null
}

lab "$L0" ""
lab "$L1" '{ loss = "0%" }'
lab "$L2" '{ delay = "50ms", rate = "100mbit" }'

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { awk -v k="$1" '{for (i=1;i<NF;i++) if ($i==k) print $(i+1)}'; }

declare -A P50 P99 RECV MIN
for r in $(seq "$ROUNDS"); do
  for l in "$L0" "$L1"; do
    out=$("$O" --from "weft-$l.h1" --to "weft-$l.h2" --dst 10.72.0.2:7100 --pps 10000 --secs 3)
    echo "round $r $l: $out" >&2
    MIN[$l]+="$(echo "$out" | field min) "
    P50[$l]+="$(echo "$out" | field p50) "
    P99[$l]+="$(echo "$out" | field p99) "
    RECV[$l]+="$(echo "$out" | field received) "
  done
  "$W" exec "$L2" h2 -- timeout $((T + 20)) iperf3 -s -1 -p 5400 >/dev/null 2>&1 &
  PIDS+=($!)
  sleep 0.5
  bps=$("$W" exec "$L2" h1 -- timeout $((T + 15)) iperf3 -c 10.72.0.2 -p 5400 -t "$T" -O 3 -J \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
  echo "round $r $L2: $bps bit/s" >&2
  TCP+="$bps "
  wait "${PIDS[-1]}" 2>/dev/null || true
done

m() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
b50=$(m "${P50[$L0]}"); w50=$(m "${P50[$L1]}")
b99=$(m "${P99[$L0]}"); w99=$(m "${P99[$L1]}")
bmin=$(m "${MIN[$L0]}"); wmin=$(m "${MIN[$L1]}")
tcp=$(m "$TCP")
TABLE=$(cat <<MD
| measurement (median of $ROUNDS rounds, load $(cut -d' ' -f1 /proc/loadavg)$([ "$BIN" = "$PWD/target/release" ] || echo ", binaries in $BIN")) | value |
| --- | ---: |
| TCP, one stream, through \`delay = "50ms", rate = "100mbit"\` (RTT 100 ms) | $(awk -v b="$tcp" 'BEGIN{printf "%.1f Mbit/s (%.0f %% of the rate)", b/1e6, b/1e6}') |
| one-way delay at 10 kpps, plain veth: min / median / p99 | $(printf "%.1f / %.1f / %.1f µs" "$bmin" "$b50" "$b99") |
| one-way delay at 10 kpps, through a wire with \`impair = { loss = "0%" }\`: min / median / p99 | $(printf "%.1f / %.1f / %.1f µs" "$wmin" "$w50" "$w99") |
| added by the wire and its impairment queue: min / median / p99 | $(awk -v e="$wmin" -v f="$bmin" -v a="$w50" -v b="$b50" -v c="$w99" -v d="$b99" 'BEGIN{printf "%.1f / %.1f / %.1f µs", e-f, a-b, c-d}') |
| datagrams received of 30,000 (plain / wire) | $(m "${RECV[$L0]}") / $(m "${RECV[$L1]}") |
MD
)
echo "$TABLE"
if [ "$WRITE" = 1 ]; then
  python3 - "$TABLE" <<'PY'
import sys, re
p = "docs/performance.md"
s = open(p).read()
t = "<!-- bench:conditions -->\n" + sys.argv[1] + "\n<!-- /bench:conditions -->"
s2 = re.sub(r"<!-- bench:conditions -->.*?<!-- /bench:conditions -->", lambda m: t, s, flags=re.S)
open(p, "w").write(s2)
PY
fi
