#!/usr/bin/env bash
# What does `weft capture` cost a busy link? iperf3 TCP through a veth pair
# in a two-namespace lab, in alternating rounds: no capture; a capture whose
# filter matches nothing (`udp port 9`, the kernel drops every packet in the
# socket filter); a capture with no filter (every packet copied to weft and
# written to /dev/null), for contrast. Each round is one bounded iperf3 run.
# Prints a table with throughput medians and ratios to the no-capture runs
# of the same invocation, and with --write puts it in docs/performance.md.
#
#   bench/capture.sh [--write] [ROUNDS] [SECONDS]   (root; iperf3 installed)
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=0
if [[ ${1:-} == --write ]]; then WRITE=1; shift; fi
ROUNDS=${1:-3}
SECS=${2:-3}
WEFT=${WEFT:-target/release/weft}
[[ -x $WEFT ]] || cargo build --release -q -p weft-cli
command -v iperf3 >/dev/null || { echo "iperf3 is needed: apt-get install iperf3" >&2; exit 1; }

export WEFT_STATE_DIR=$(mktemp -d /tmp/weft-bench-cap.XXXXXX)
LAB=benchcap$$
FILE=$WEFT_STATE_DIR/lab.toml
cat >"$FILE" <<EOF
name = "$LAB"
[nodes.ns1.interfaces.veth0]
addresses = ["10.9.0.1/24"]
[nodes.ns2.interfaces.veth1]
addresses = ["10.9.0.2/24"]
[[links]]
endpoints = ["ns1:veth0", "ns2:veth1"]
EOF
CAP_PID=
cleanup() {
  [[ -n $CAP_PID ]] && kill "$CAP_PID" 2>/dev/null || true
  "$WEFT" down "$LAB" >/dev/null 2>&1 || true
  rm -rf "$WEFT_STATE_DIR"
}
trap cleanup EXIT
"$WEFT" up --quiet "$FILE"

# One iperf3 run of SECS seconds; prints Gbit/s received.
run_iperf() {
  timeout $((SECS + 10)) "$WEFT" exec "$LAB" ns2 -- iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  local out
  out=$(timeout $((SECS + 10)) "$WEFT" exec "$LAB" ns1 -- iperf3 -c 10.9.0.2 -p 5201 -t "$SECS" -J)
  wait "$srv" || true
  python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' <<<"$out"
}

# Start a capture on the receiving end and wait until it listens.
start_capture() {
  local log=$WEFT_STATE_DIR/cap.log
  : >"$log"
  "$WEFT" capture "$LAB" ns2:veth1 -w /dev/null "$@" 2>"$log" &
  CAP_PID=$!
  for _ in $(seq 100); do grep -q listening "$log" && return; sleep 0.05; done
  echo "capture did not start: $(cat "$log")" >&2; exit 1
}
stop_capture() {
  kill -INT "$CAP_PID"; wait "$CAP_PID" || true; CAP_PID=
}

declare -a NONE MISS ALL
for r in $(seq "$ROUNDS"); do
  NONE+=("$(run_iperf)")
  start_capture udp port 9; MISS+=("$(run_iperf)"); stop_capture
  start_capture; ALL+=("$(run_iperf)"); stop_capture
  echo "round $r: no capture ${NONE[-1]}, non-matching filter ${MISS[-1]}, no filter ${ALL[-1]} Gbit/s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
N=$(median "${NONE[@]}"); M=$(median "${MISS[@]}"); A=$(median "${ALL[@]}")
ratio() { awk -v a="$1" -v b="$N" 'BEGIN {printf "%.3f", a/b}'; }
TABLE=$(cat <<EOF
iperf3 TCP through one veth pair, ${ROUNDS} alternating rounds of ${SECS} s, medians; \`$(basename "$WEFT")\` from \`$(dirname "$WEFT")\`; $(nproc) cores, kernel $(uname -r).

| capture on the receiving veth | Gbit/s | ratio to no capture |
|---|---:|---:|
| none | $N | 1.000 |
| \`weft capture ... -w /dev/null udp port 9\` (matches nothing) | $M | $(ratio "$M") |
| \`weft capture ... -w /dev/null\` (no filter: every packet) | $A | $(ratio "$A") |

All rounds (no capture / non-matching / no filter): $(IFS=' '; echo "${NONE[*]} / ${MISS[*]} / ${ALL[*]}").
EOF
)
echo "$TABLE"
if [[ $WRITE == 1 ]]; then
  python3 - "$TABLE" <<'PY'
import re, sys
p = "docs/performance.md"
s = open(p).read()
block = "<!-- bench:capture:begin -->\n" + sys.argv[1] + "\n<!-- bench:capture:end -->"
pat = re.compile(r"<!-- bench:capture:begin -->.*?<!-- bench:capture:end -->", re.S)
s = pat.sub(lambda m: block, s) if pat.search(s) else s.rstrip("\n") + "\n\n" + block + "\n"
open(p, "w").write(s)
PY
fi
