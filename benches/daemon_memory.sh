#!/usr/bin/env bash
# Measured run: resident memory of `powa-sentinel run` with 10, 100 and 1,000 servers
# registered in one PoWA repository (targets: < 20 MB at 100, < 60 MB at 1,000).
#
#   benches/daemon_memory.sh                 # starts a lab of its own
#   POWA_LAB_ENV=/path/lab.env benches/daemon_memory.sh
#
# For each N it creates a database powa_bench_N in the lab's PoWA 4 cluster with the powa
# extension and N rows in powa_servers (srvid 0 plus N-1 registered by direct inserts as
# the lab's admin; no snapshot data, so each cycle reads empty windows), runs the daemon
# (release build) collecting every server every 5 s for MEASURE_SECONDS (default 40),
# then prints VmRSS (now) and VmHWM (peak) from /proc. The databases are dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
MEASURE_SECONDS=${MEASURE_SECONDS:-40}
SIZES=${SIZES:-"10 100 1000"}

work=$(mktemp -d -t powa-sentinel-mem.XXXXXX)
chmod 755 "$work"
own_lab=""
if [[ -z ${POWA_LAB_ENV:-} ]]; then
    own_lab="$work/lab"
    POWA_LAB_ENV=$(tests/support/powa-lab up "$own_lab" --watch-pid $$ | tail -n 1)
fi
# shellcheck disable=SC1090
. "$POWA_LAB_ENV"
lab=$POWA_LAB_DIR
psql_admin() { tests/support/powa-lab psql "$lab" repo -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
    [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null || true
    for n in $SIZES; do psql_admin -d postgres -c "DROP DATABASE IF EXISTS powa_bench_$n" >/dev/null 2>&1 || true; done
    [[ -n $own_lab ]] && tests/support/powa-lab down "$own_lab" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

cargo build --release --bin powa-sentinel >&2
bin=${CARGO_TARGET_DIR:-target}/release/powa-sentinel

printf '%-8s %-10s %-10s %s\n' servers rss_mb peak_mb cycles_ok
for n in $SIZES; do
    db=powa_bench_$n
    psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    psql_admin -d "$db" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION btree_gist;
CREATE EXTENSION powa;
INSERT INTO powa_servers (hostname, alias, port, username, dbname, frequency, retention)
SELECT 'bench-' || i, 'bench' || i, 5432, 'powa', 'powa', 300, '8 days'
FROM generate_series(1, $n - 1) i;
SQL
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$work/bench.toml" <<TOML
[log]
level = "warning"
format = "json"
[schedule]
cron = "0 0 0 1 1 *"
[collection]
interval = "5s"
min_interval = "1s"
max_jitter = "4s"
max_concurrent_per_repository = 4
[http]
listen = "127.0.0.1:$port"
[repositories.bench]
dsn = "host=$POWA_LAB_SOCKET_DIR port=$POWA_LAB_REPO_PORT dbname=$db user=$POWA_LAB_ADMIN_USER"
[channels.console]
type = "console"
TOML
    "$bin" run --config "$work/bench.toml" >/dev/null 2>"$work/stderr-$n.log" &
    pid=$!
    sleep "$MEASURE_SECONDS"
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    ok=$(curl -s "127.0.0.1:$port/metrics" | awk '/^powa_sentinel_cycles_total\{.*outcome="ok"/ {s += $2} END {print s + 0}')
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
    printf '%-8s %-10.1f %-10.1f %s\n' "$n" "$(echo "$rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" "$ok"
    psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null
done
