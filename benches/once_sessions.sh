#!/usr/bin/env bash
# Measured run: wall time of `powa-sentinel once` (release build) over the synthetic
# repository the reader bench builds (benches/reader.rs: servers bench-100 … in the lab's
# PoWA 4.1 repository), with 1 and with 4 sessions (`[collection]
# max_concurrent_per_repository`), read as the read-only role of lab.env.
#
#   POWA_LAB_ENV=/path/lab.env benches/once_sessions.sh
#
# Run the reader bench first (it builds the repository, or reuses it). The analysis is
# the default one (24 h window, regression baseline 7 days back; baseline_periods = 1,
# as in the reader bench) over every bench server, kcache included; the console channel
# gets the report (thrown away) and no server is reached directly (reach_servers =
# false: the bench servers do not exist). Each setting runs RUNS times (default 3) after
# one warm-up, in turns with the seed system's query for the same two windows (the
# target: `once` at least twice as fast); every run's wall time is printed, then the
# median of each and the ratios.
# Sizes: BENCH_SERVERS (default 10) from srvid BENCH_FIRST_SRVID (default 100), as for
# the reader bench.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
. benches/synthetic_fleet.sh

work=$(mktemp -d -t powa-sentinel-once.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

config() {
    cat > "$work/once-$1.toml" <<TOML
[log]
level = "warning"
[analysis]
window = "24h"
baseline_offset = "7d"
baseline_periods = 1
[collection]
max_concurrent_per_repository = $1
$repository
[channels.console]
type = "console"
TOML
}

# Wall seconds of one run (its output kept in the work dir; a failed run stops the script).
once() {
    local start end
    start=$(date +%s.%N)
    if ! "$bin" once --config "$work/once-$1.toml" >"$work/out-$1.log" 2>&1; then
        echo "once with $1 session(s) failed:" >&2
        tail -n 20 "$work/out-$1.log" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# The seed system's query (benches/seed_query.sql, statements only) for the same two
# windows over the same servers, one query per window over the whole fleet, as the seed
# runs it: wall seconds of both.
seed_sql() {
    sed -e "s/\$1/'$1'::timestamptz/g" -e "s/\$2/'$2'::timestamptz/g" \
        -e "s/\$3/$FIRST/g" -e "s/\$4/$((FIRST + SERVERS - 1))/g" benches/seed_query.sql
}
seed() {
    local now start end
    now=$(date -u +%s)
    for back in 0 7; do
        seed_sql "$(date -u -d "@$((now - (back + 1) * 86400))" '+%F %T+00')" \
            "$(date -u -d "@$((now - back * 86400))" '+%F %T+00')"
        echo ";"
    done >"$work/seed.sql"
    start=$(date +%s.%N)
    PGPASSWORD=$POWA_LAB_RO_PASSWORD psql -X -q -o /dev/null -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$POWA_LAB_REPO_PORT dbname=powa user=$POWA_LAB_RO_USER" -f "$work/seed.sql"
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

# The settings take turns in every round, so that a slower stretch of the machine
# weighs on all of them alike.
config 1
config 4
once 1 >/dev/null # warm-up
once 4 >/dev/null
declare -A runs med
for _ in $(seq "$RUNS"); do
    runs[seed]+="$(seed) "
    runs[1]+="$(once 1) "
    runs[4]+="$(once 4) "
done
for k in seed 1 4; do
    # shellcheck disable=SC2086
    med[$k]=$(printf '%s\n' ${runs[$k]} | median)
done
# shellcheck disable=SC2086
printf 'seed query, %s servers, both windows: runs %s s; median %.2f s\n' "$SERVERS" \
    "$(printf '%.2f ' ${runs[seed]})" "${med[seed]}"
for sessions in 1 4; do
    # shellcheck disable=SC2086
    printf 'once, %s servers, %s session(s): runs %s s; median %.2f s (seed/once %.2fx)\n' "$SERVERS" \
        "$sessions" "$(printf '%.2f ' ${runs[$sessions]})" "${med[$sessions]}" \
        "$(echo "${med[seed]} / ${med[$sessions]}" | bc -l)"
done
printf 'once with 1 session / with 4 sessions: %.2fx\n' "$(echo "${med[1]} / ${med[4]}" | bc -l)"
