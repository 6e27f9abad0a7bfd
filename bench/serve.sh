#!/usr/bin/env bash
# What does `weft serve` cost, watching a big lab? A star of HOSTS hosts on
# one bridge (500 by default) is built, `weft serve` started, and:
#  - server side: the page's request (/api/live) 8 times, a second apart;
#    the server says how long it read the lab and drew it; anchored against `weft status LAB --json` of the same lab, timed
#    the same way in the same run (a process of its own, JSON out);
#  - client side: headless Chromium keeps the page open SECONDS seconds
#    (redrawn every second, as for a person) and the page's own record of
#    each redraw is read back (window.weftRedraws: request, putting the SVG
#    in the page, until painted); with the CPU the server used meanwhile,
#    as a share of one core.
# Prints a table of medians, and with --write puts it in
# docs/performance.md (between the bench:serve markers).
#
#   bench/serve.sh [--write] [HOSTS] [SECONDS]
#   (root; chromium and chromium-driver installed; WEFT=path picks the binary,
#    default target/release/weft, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=0
if [[ ${1:-} == --write ]]; then WRITE=1; shift; fi
HOSTS=${1:-500}
SECS=${2:-20}
WEFT=${WEFT:-target/release/weft}
[[ -x $WEFT ]] || cargo build --release -q -p weft-cli
for b in /usr/bin/chromium /usr/bin/chromedriver; do
  [[ -x $b ]] || { echo "$b is needed: apt-get install chromium chromium-driver" >&2; exit 1; }
done

export WEFT_STATE_DIR=$(mktemp -d /tmp/weft-bench-serve.XXXXXX)
LAB=benchserve$$
FILE=$WEFT_STATE_DIR/lab.toml
cat >"$FILE" <<EOF
name = "$LAB"
[nodes.br]
kind = "bridge"
addresses = ["10.0.0.1/16"]
[nodes.h]
count = $HOSTS
attach = "br"
EOF
SERVE_PID=
cleanup() {
  [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null || true
  "$WEFT" down "$LAB" >/dev/null 2>&1 || true
  rm -rf "$WEFT_STATE_DIR"
}
trap cleanup EXIT
"$WEFT" up --quiet "$FILE"

"$WEFT" serve "$LAB" >"$WEFT_STATE_DIR/serve.out" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do
  grep -q 'http://' "$WEFT_STATE_DIR/serve.out" && break
  sleep 0.1
done
URL=$(grep -o 'http://[^ ]*' "$WEFT_STATE_DIR/serve.out")

TABLE=$(python3 - "$URL" "$SECS" "$WEFT" "$LAB" "$SERVE_PID" "$HOSTS" "$WEFT_STATE_DIR" <<'PY'
import json, os, socket, statistics, subprocess, sys, time, urllib.request

url, secs, weft, lab, pid, hosts, tmp = sys.argv[1:]
secs, hosts = float(secs), int(hosts)
base = url.split("/?")[0]
token = url.split("token=")[1]

def med(xs):
    return statistics.median(xs) if xs else float("nan")

def cpu_s(pid):
    # utime + stime of the whole process, in clock ticks.
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

# Server side: the page's request (/api/live, whole drawing), a second
# apart so that each reads the lab afresh (a read is kept 0.8 s).
status_ms, svg_ms, wall_ms, size = [], [], [], 0
for _ in range(8):
    time.sleep(1.0)
    req = urllib.request.Request(base + "/api/live", headers={"X-Weft-Token": token})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        j = json.load(r)
    wall_ms.append((time.perf_counter() - t0) * 1e3)
    size = len(j["svg"] or "")
    status_ms.append(j["timing"]["status_ms"])
    svg_ms.append(j["timing"]["svg_ms"])

# The anchor: the CLI's own `weft status --json` of the same lab.
cli_ms = []
for _ in range(5):
    t0 = time.perf_counter()
    subprocess.run([weft, "status", lab, "--json"], stdout=subprocess.DEVNULL, check=True)
    cli_ms.append((time.perf_counter() - t0) * 1e3)

# Client side: the page in headless Chromium, as a person keeps it open.
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
drv = subprocess.Popen(["/usr/bin/chromedriver", f"--port={port}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def wd(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["value"]
try:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 f"--user-data-dir={tmp}/chromium", "--window-size=1500,950"]}}}}
    sid = wd("POST", "/session", caps)["sessionId"]
    try:
        wd("POST", f"/session/{sid}/url", {"url": url})
        cpu0, t0 = cpu_s(pid), time.perf_counter()
        time.sleep(secs)
        cpu1, t1 = cpu_s(pid), time.perf_counter()
        redraws = wd("POST", f"/session/{sid}/execute/sync",
                     {"script": "return window.weftRedraws || [];", "args": []})
    finally:
        wd("DELETE", f"/session/{sid}")
finally:
    drv.terminate()
    drv.wait()
# The first redraws warm up (no rates yet, caches cold).
rd = redraws[2:] or redraws
col = lambda k: med([r[k] for r in rd if r.get(k) is not None])
server_share = (cpu1 - cpu0) / (t1 - t0)
load = open("/proc/loadavg").read().split()[0]

print(f"{hosts} hosts on one bridge, page open {secs:.0f} s ({len(redraws)} redraws); load average {load}; median ms.")
print()
print("| | ms | note |")
print("|---|---:|---|")
print(f"| server: read the lab (status) | {med(status_ms):.0f} | in `weft serve`, per redraw |")
print(f"| server: draw the SVG | {med(svg_ms):.0f} | {size/1e6:.2f} MB |")
print(f"| server: whole request | {med(wall_ms):.0f} | drawing and counters, from a client on the machine |")
print(f"| anchor: `weft status --json`, a process | {med(cli_ms):.0f} | ratio server request / anchor: {med(wall_ms)/med(cli_ms):.2f} |")
print(f"| page: request, as the browser saw it | {col('request_ms'):.0f} | |")
changed = sum(1 for r in rd if r.get("drawing_changed"))
print(f"| page: drawing (when changed) and rates into the page | {col('dom_ms'):.0f} | the drawing changed in {changed} of {len(rd)} |")
print(f"| page: until painted | {col('paint_ms'):.0f} | |")
print(f"| page: whole redraw | {col('total_ms'):.0f} | {col('total_ms')/1000:.0%} of the 1 s between redraws |")
print(f"| server CPU while the page is open | | {server_share:.0%} of one core |")
PY
)
echo "$TABLE"
if [[ $WRITE == 1 ]]; then
  python3 - "$TABLE" <<'PY'
import sys, re
table = sys.argv[1]
p = "docs/performance.md"
s = open(p).read()
begin, end = "<!-- bench:serve:begin -->", "<!-- bench:serve:end -->"
block = f"{begin}\n{table}\n{end}"
if begin in s:
    s = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, s, flags=re.S)
else:
    s += "\n" + block + "\n"
open(p, "w").write(s)
PY
fi
