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
# one warm-up; every run's wall time is printed, then the median of each.
# Sizes: BENCH_SERVERS (default 10) from srvid BENCH_FIRST_SRVID (default 100), as for
# the reader bench.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${POWA_LAB_ENV:?set POWA_LAB_ENV to the lab.env of a running lab (see tests/support/powa-lab)}"
RUNS=${RUNS:-3}
SERVERS=${BENCH_SERVERS:-10}
FIRST=${BENCH_FIRST_SRVID:-100}
# shellcheck disable=SC1090
. "$POWA_LAB_ENV"

work=$(mktemp -d -t powa-sentinel-once.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

nice cargo build --release --all-features --bin powa-sentinel >&2
bin=${CARGO_TARGET_DIR:-target}/release/powa-sentinel

names=$(seq "$FIRST" $((FIRST + SERVERS - 1)) | sed 's/.*/"bench-&"/' | paste -sd, -)
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
[repositories.bench]
dsn = "host=127.0.0.1 port=$POWA_LAB_REPO_PORT dbname=powa user=$POWA_LAB_RO_USER"
password_env = "BENCH_REPO_PASSWORD"
statement_timeout = "300s"
reach_servers = false
servers = [$names]
[channels.console]
type = "console"
TOML
}
export BENCH_REPO_PASSWORD=$POWA_LAB_RO_PASSWORD

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

declare -A med
for sessions in 1 4; do
    config "$sessions"
    once "$sessions" >/dev/null # warm-up
    times=()
    for _ in $(seq "$RUNS"); do
        times+=("$(once "$sessions")")
    done
    med[$sessions]=$(printf '%s\n' "${times[@]}" | median)
    printf 'once, %s servers, %s session(s): runs %s s; median %.2f s\n' "$SERVERS" "$sessions" \
        "$(printf '%.2f ' "${times[@]}")" "${med[$sessions]}"
done
printf 'once with 1 session / with 4 sessions: %.2fx\n' "$(echo "${med[1]} / ${med[4]}" | bc -l)"
