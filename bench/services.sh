#!/bin/bash
# What services cost: `weft up` of the star (HOSTS hosts on one bridge),
# once without services and once with one small service per host (a
# `sleep`, ready when it has run 0.2 s), then `weft down`; wall time of
# each, and the memory of the supervisor and of all services (RSS from
# /proc). ROUNDS rounds, medians printed as a Markdown table.
#
#   cargo build --release -p weft-cli && sudo bench/services.sh [HOSTS] [ROUNDS]
#
# Everything runs in the lab's namespaces; `weft down` removes it (and its
# services) at the end of each round.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-500}
ROUNDS=${2:-3}
W=$PWD/target/release/weft
[ -x "$W" ] || { echo "build first: cargo build --release -p weft-cli" >&2; exit 1; }
export WEFT_STATE_DIR=$(mktemp -d /tmp/weft-bench-svc.XXXXXX)
D=$WEFT_STATE_DIR
trap '"$W" down svcb >/dev/null 2>&1 || true; "$W" down svcn >/dev/null 2>&1 || true; rm -rf "$D"' EXIT

cat > "$D/plain.toml" <<EOF
name = "svcn"
[nodes.br]
kind = "bridge"
addresses = ["10.0.0.1/16"]
[nodes.h]
count = $HOSTS
attach = "br"
EOF
sed 's/name = "svcn"/name = "svcb"/' "$D/plain.toml" > "$D/svc.toml"
cat >> "$D/svc.toml" <<'EOF'
[nodes.h.services.idle]
command = ["sleep", "1000000"]
EOF

now() { date +%s.%N; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: > "$D/up_plain"; : > "$D/up_svc"; : > "$D/down_svc"; : > "$D/sup_kb"; : > "$D/svc_kb"
for r in $(seq "$ROUNDS"); do
  t0=$(now); "$W" up -q "$D/plain.toml" >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc >> "$D/up_plain"
  "$W" down svcn >/dev/null
  t0=$(now); "$W" up -q "$D/svc.toml" >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc >> "$D/up_svc"
  sup=$(python3 -c "import json;print(json.load(open('$D/labs/svcb/services/supervisor.json'))['pid'])")
  rss_kb "$sup" >> "$D/sup_kb"
  total=0
  for p in $(python3 -c "import json;[print(u['pid']) for u in json.load(open('$D/labs/svcb/services/status.json'))['units'].values() if u['pid']]"); do
    total=$((total + $(rss_kb "$p")))
  done
  echo "$total" >> "$D/svc_kb"
  t0=$(now); "$W" down svcb >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc >> "$D/down_svc"
done

printf '| hosts | `up` without services | `up` with a service per host | `down` with services | supervisor RSS | services RSS (all) |\n'
printf '|---:|---:|---:|---:|---:|---:|\n'
printf '| %s | %.2f s | %.2f s | %.2f s | %.1f MB | %.0f MB |\n' "$HOSTS" \
  "$(median < "$D/up_plain")" "$(median < "$D/up_svc")" "$(median < "$D/down_svc")" \
  "$(echo "$(median < "$D/sup_kb") / 1024" | bc -l)" "$(echo "$(median < "$D/svc_kb") / 1024" | bc -l)"
