#!/bin/bash
# The star against the kernel's floor: `starfloor` (the least a program
# does to build N hosts on one bridge), `weft up` + `weft down`, and
# `ip -batch`, alternating within each run, RUNS runs per size; medians,
# weft / floor and ip -batch / weft, with the load average before and
# after (the machine is shared: quote ratios from one run).
#
#   cargo build --release -p weft-cli -p weft-bench
#   sudo bench/star.sh [--write] [SIZES] [RUNS]      # defaults 500,1000 and 3
#
# The harness is the `star` binary (bench/README.md): it times each `up`
# and each removal separately, removal until the kernel has destroyed the
# namespaces, and checks every lab with ping before removing it. It uses
# only `wb-*` namespaces and `weft-star<N>` labs, and removes them on exit.
# farm-bench, where installed, times whole commands; it cannot split a
# build from its removal, so the harness does the timing here.
# --write puts the table into docs/performance.md (bench:star markers).
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=()
if [ "${1:-}" = --write ]; then
    WRITE=(--write-docs docs/performance.md)
    shift
fi
SIZES=${1:-500,1000}
RUNS=${2:-3}
R=$PWD/target/release
for b in weft star starfloor; do
    [ -x "$R/$b" ] || { echo "build first: cargo build --release -p weft-cli -p weft-bench" >&2; exit 1; }
done
echo "load before: $(cat /proc/loadavg)"
"$R/star" --sizes "$SIZES" --runs "$RUNS" --methods floor,weft,batch --weft "$R/weft" "${WRITE[@]}"
echo "load after: $(cat /proc/loadavg)"
