#!/usr/bin/env bash
# Measured run: resident memory of `powa-sentinel run` (release build) over time, on the
# synthetic repository the reader bench builds (benches/reader.rs: servers bench-100 …
# in the lab's PoWA 4.1 repository, 1,500 query keys each, pg_stat_kcache on), with the
# default analysis (24 h window, weekly baselines) and one new snapshot of every bench
# server every SNAPSHOT_MINUTES (default 5), taken by PoWA's own functions
# (benches/synthetic_powa_snapshots.sql: they coalesce every 100th). The daemon collects
# every 60 s; VmRSS is printed every minute for MEASURE_MINUTES (default 15), then the
# median of the second half (steady state), the last value and the peak (VmHWM).
#
#   POWA_LAB_ENV=/path/lab.env benches/daemon_steady_memory.sh
#
# Run the reader bench first (it builds the repository, or reuses it). Sizes:
# BENCH_SERVERS (default 10) from srvid BENCH_FIRST_SRVID (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
MEASURE_MINUTES=${MEASURE_MINUTES:-15}
SNAPSHOT_MINUTES=${SNAPSHOT_MINUTES:-5}
. benches/synthetic_fleet.sh

work=$(mktemp -d -t powa-sentinel-steady.XXXXXX)
chmod 755 "$work"
cleanup() {
    [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

ids=$(seq "$FIRST" $((FIRST + SERVERS - 1)) | paste -sd, -)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/steady.toml" <<TOML
[log]
level = "warning"
[state]
dir = "$work/state"
[collection]
interval = "60s"
[http]
listen = "127.0.0.1:$port"
$repository
[channels.file]
type = "file"
path = "$work/reports.jsonl"
TOML

# One snapshot of every bench server, as the reader bench takes them (psql runs as the
# lab's OS user: the script must be readable by it).
cp benches/synthetic_powa_snapshots.sql "$work/snap.sql"
chmod 644 "$work/snap.sql"
snapshot() {
    nice tests/support/powa-lab psql "$POWA_LAB_DIR" repo -X -q -v ON_ERROR_STOP=1 -o /dev/null \
        -d powa -v "srvids=$ids" -v add=1 -v force_coalesce=false -f "$work/snap.sql"
}

"$bin" run --config "$work/steady.toml" >/dev/null 2>"$work/stderr.log" &
pid=$!
rss=()
printf '%-7s %-8s %s\n' minute rss_mb cycles_ok
for m in $(seq "$MEASURE_MINUTES"); do
    sleep 60
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "the daemon stopped:" >&2
        tail -n 20 "$work/stderr.log" >&2
        exit 1
    fi
    kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    rss+=("$kb")
    ok=$(curl -s "127.0.0.1:$port/metrics" | awk '/^powa_sentinel_cycles_total\{.*outcome="ok"/ {s += $2} END {print s + 0}')
    printf '%-7s %-8.1f %s\n' "$m" "$(echo "$kb / 1024" | bc -l)" "$ok"
    if ((m % SNAPSHOT_MINUTES == 0)); then snapshot; fi
done
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
half=$(printf '%s\n' "${rss[@]:$((${#rss[@]} / 2))}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
printf 'steady state (median of the second half) %.1f MB, last %.1f MB, peak %.1f MB\n' \
    "$(echo "$half / 1024" | bc -l)" "$(echo "${rss[-1]} / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
