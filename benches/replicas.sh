#!/usr/bin/env bash
# Measured run: REPLICAS `powa-sentinel run` processes (release build) sharing a fleet of
# FLEET servers through one state database, on the lab (tests/support/powa-lab).
#
#   POWA_LAB_ENV=/path/lab.env benches/replicas.sh
#
# The fleet: a PoWA 4.1 repository database of its own on the lab's repo cluster
# (`bench_fleet`, made once and reused), whose powa_servers lists FLEET servers that never
# snapshot (so every cycle is a real read of an empty window, and every server has a
# "PoWA is not snapshotting" finding: a burst of about 2×FLEET findings for the first
# report). The state: schema `bench_replicas` of the lab's state database.
#
# Prints, as `name value` lines:
# - the split: servers per replica once all are in, and the largest deviation from an even
#   share (percent);
# - the state database's cost over WINDOW seconds of steady state, from
#   pg_stat_statements of that database: statements and rows per server cycle and per
#   queued report, and which statements cost what;
# - the hand-over: the delivering replica killed (-9), seconds until another holds the
#   delivery and every server is collected again (lease LEASE).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${POWA_LAB_ENV:?set POWA_LAB_ENV to the lab.env of a running lab (see tests/support/powa-lab)}"
FLEET=${FLEET:-1000}
REPLICAS=${REPLICAS:-3}
LEASE=${LEASE:-5s}
WINDOW=${WINDOW:-60}
PERIOD=${PERIOD:-30s}
# shellcheck disable=SC1090
. "$POWA_LAB_ENV"
lab=tests/support/powa-lab
admin() { "$lab" psql "$POWA_LAB_DIR" repo -X -A -t -q -d "$1" -c "$2"; }

work=$(mktemp -d -t powa-sentinel-replicas.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

[[ -n ${BENCH_NO_BUILD:-} ]] || nice cargo build --release --all-features --bin powa-sentinel >&2
bin=${CARGO_TARGET_DIR:-target}/release/powa-sentinel

# The fleet repository, made once.
have=$(admin postgres "SELECT count(*) FROM pg_database WHERE datname = 'bench_fleet'")
if [[ $have == 0 ]]; then
    admin postgres "CREATE DATABASE bench_fleet"
    admin bench_fleet "CREATE EXTENSION powa CASCADE"
    admin bench_fleet "GRANT CONNECT ON DATABASE bench_fleet TO $POWA_LAB_RO_USER; GRANT USAGE ON SCHEMA public TO $POWA_LAB_RO_USER; GRANT SELECT ON ALL TABLES IN SCHEMA public TO $POWA_LAB_RO_USER"
fi
n=$(admin bench_fleet "SELECT count(*) FROM powa_servers WHERE hostname LIKE 'fleet-%'")
if [[ $n != "$FLEET" ]]; then
    admin bench_fleet "DELETE FROM powa_servers WHERE hostname LIKE 'fleet-%'; INSERT INTO powa_servers (hostname, alias, port, username, dbname) SELECT 'fleet-'||i, 'fleet-'||i, 5432, 'powa', 'powa' FROM generate_series(1, $FLEET) i"
fi
admin sentinel_state "DROP SCHEMA IF EXISTS bench_replicas CASCADE" 2>/dev/null

ports=()
for i in $(seq 1 "$REPLICAS"); do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    ports+=("$port")
    cat >"$work/r$i.toml" <<TOML
[log]
level = "info"
format = "json"
[analysis]
window = "1h"
[collection]
interval = "$PERIOD"
min_interval = "10s"
max_concurrent_per_repository = 2
[schedule]
cron = "0 * * * * *"
[http]
listen = "127.0.0.1:$port"
[repositories.fleet]
dsn = "host=127.0.0.1 port=$POWA_LAB_REPO_PORT dbname=bench_fleet user=$POWA_LAB_RO_USER password=$POWA_LAB_RO_PASSWORD"
reach_servers = false
[state]
dsn = "$POWA_LAB_STATE_DSN"
schema = "bench_replicas"
lease = "$LEASE"
[channels.file]
type = "file"
path = "$work/findings.jsonl"
TOML
done

status() { curl -s -m 5 "http://127.0.0.1:$1/status" || true; }
# servers collected per replica, as "a b c" (0 for one that does not answer).
shares() {
    local out=()
    for p in "$@"; do
        out+=("$(status "$p" | python3 -c 'import json,sys
try: print(len(json.load(sys.stdin)["replicas"]["collecting"]))
except Exception: print(0)')")
    done
    echo "${out[*]}"
}
sum() { local s=0; for x in "$@"; do s=$((s + x)); done; echo $s; }

t0=$(date +%s.%N)
for i in $(seq 1 "$REPLICAS"); do
    "$bin" run --config "$work/r$i.toml" >"$work/r$i.out" 2>"$work/r$i.log" &
    pids+=($!)
done
# The local server of the repository is collected too.
want=$((FLEET + 1))
while :; do
    read -r -a s <<<"$(shares "${ports[@]}")"
    if [[ $(sum "${s[@]}") == "$want" ]]; then
        zero=0
        for x in "${s[@]}"; do [[ $x == 0 ]] && zero=1; done
        [[ $zero == 0 ]] && break
    fi
    if (($(date +%s) - ${t0%.*} > 300)); then
        echo "the fleet was never split: ${s[*]}" >&2
        exit 1
    fi
    sleep 1
done
t1=$(date +%s.%N)
echo "split_servers ${s[*]}"
python3 - "$want" "${s[@]}" <<'PY'
import sys
want, shares = int(sys.argv[1]), [int(x) for x in sys.argv[2:]]
even = want / len(shares)
print("split_max_deviation_percent %.1f" % max(abs(x - even) / even * 100 for x in shares))
PY
python3 -c "print('split_seconds_after_start %.1f' % ($t1 - $t0))"

# Steady state: the first cycles and the first report (the burst) are past.
sleep 90
cycles() {
    local total=0
    for p in "${ports[@]}"; do
        c=$(status "$p" | python3 -c 'import json,sys
try: print(sum(v["cycles"] for v in json.load(sys.stdin)["servers"].values()))
except Exception: print(0)')
        total=$((total + c))
    done
    echo $total
}
queued() {
    local total=0
    for p in "${ports[@]}"; do
        q=$(curl -s -m 5 "http://127.0.0.1:$p/metrics" | awk '/^powa_sentinel_findings_queued_total/ {print $2}')
        total=$((total + ${q:-0}))
    done
    echo $total
}
stmts() {
    admin powa "SELECT queryid, calls, rows, regexp_replace(left(query, 70), '\s+', ' ', 'g') FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'sentinel_state') AND query NOT ILIKE '%pg_stat_statements%'" | sort
}
stmts >"$work/before"
c0=$(cycles)
q0=$(queued)
sleep "$WINDOW"
stmts >"$work/after"
c1=$(cycles)
q1=$(queued)
python3 - "$work/before" "$work/after" $((c1 - c0)) $((q1 - q0)) <<'PY'
import sys
def read(p):
    out = {}
    for line in open(p):
        parts = line.rstrip("\n").split("|", 3)
        if len(parts) == 4 and parts[0]:
            out[parts[0]] = (int(parts[1]), int(parts[2]), parts[3])
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
cycles, queued = int(sys.argv[3]), int(sys.argv[4])
rows = []
for k, (calls, nrows, q) in after.items():
    c0, r0, _ = before.get(k, (0, 0, q))
    if calls - c0 > 0:
        rows.append((calls - c0, nrows - r0, q))
calls = sum(r[0] for r in rows)
written = sum(r[1] for r in rows if r[2].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "WITH")))
print("window_server_cycles", cycles)
print("window_reports_queued", queued)
print("statements_per_server_cycle %.2f" % (calls / max(cycles, 1)))
print("rows_written_per_server_cycle %.2f" % (written / max(cycles, 1)))
print("statements_per_queued_report %.2f" % (calls / max(queued, 1)))
for calls_, nrows, q in sorted(rows, reverse=True)[:12]:
    print("statement calls=%d rows=%d %s" % (calls_, nrows, q))
PY

# Hand-over: the delivering replica killed.
deliverer=""
for i in "${!ports[@]}"; do
    d=$(status "${ports[$i]}" | python3 -c 'import json,sys
r=json.load(sys.stdin)["replicas"]; print("yes" if r.get("delivery",{}).get("holder")==r["me"] else "")')
    [[ $d == yes ]] && deliverer=$i
done
kill -9 "${pids[$deliverer]}"
tk=$(date +%s.%N)
rest=()
for i in "${!ports[@]}"; do [[ $i != "$deliverer" ]] && rest+=("${ports[$i]}"); done
delivery_at=""
while :; do
    now=$(date +%s.%N)
    if [[ -z $delivery_at ]]; then
        h=$(status "${rest[0]}" | python3 -c 'import json,sys
try: r=json.load(sys.stdin)["replicas"]; print(r["delivery"]["epoch"])
except Exception: print(0)')
        [[ $h -gt 1 ]] && delivery_at=$now
    fi
    read -r -a s <<<"$(shares "${rest[@]}")"
    if [[ -n $delivery_at && $(sum "${s[@]}") == "$want" ]]; then
        break
    fi
    if (($(date +%s) - ${tk%.*} > 120)); then
        echo "no hand-over within 120s: ${s[*]}" >&2
        exit 1
    fi
    sleep 0.2
done
python3 -c "print('handover_delivery_seconds %.1f' % ($delivery_at - $tk)); print('handover_all_servers_seconds %.1f' % ($now - $tk))"
echo "after_handover_split ${s[*]}"
echo "lease $LEASE"
for i in "${!pids[@]}"; do [[ $i != "$deliverer" ]] && kill -TERM "${pids[$i]}"; done
wait 2>/dev/null || true
pids=()
admin sentinel_state "DROP SCHEMA IF EXISTS bench_replicas CASCADE" 2>/dev/null
