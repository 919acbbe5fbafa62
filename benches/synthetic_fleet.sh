# Sourced by the scripts that run the release binary over the reader bench's synthetic
# repository (benches/reader.rs: servers bench-<srvid> in the lab's PoWA 4.1 repository):
# reads the lab's environment, builds the binary and sets `bin` (or takes
# POWA_SENTINEL_BIN), SERVERS and FIRST
# (BENCH_SERVERS, default 10, from srvid BENCH_FIRST_SRVID, default 100, as for the
# reader bench) and `repository`, the TOML of a repository listing them, read as the
# lab's read-only role (no server is reached directly: they do not exist).
: "${POWA_LAB_ENV:?set POWA_LAB_ENV to the lab.env of a running lab (see tests/support/powa-lab)}"
SERVERS=${BENCH_SERVERS:-10}
FIRST=${BENCH_FIRST_SRVID:-100}
# shellcheck disable=SC1090
. "$POWA_LAB_ENV"
# POWA_SENTINEL_BIN: another binary to run instead (to compare two builds).
if [[ -n ${POWA_SENTINEL_BIN:-} ]]; then
    bin=$POWA_SENTINEL_BIN
else
    nice cargo build --release --all-features --bin powa-sentinel >&2
    bin=${CARGO_TARGET_DIR:-target}/release/powa-sentinel
fi
names=$(seq "$FIRST" $((FIRST + SERVERS - 1)) | sed 's/.*/"bench-&"/' | paste -sd, -)
repository="[repositories.bench]
dsn = \"host=127.0.0.1 port=$POWA_LAB_REPO_PORT dbname=powa user=$POWA_LAB_RO_USER\"
password_env = \"BENCH_REPO_PASSWORD\"
statement_timeout = \"300s\"
reach_servers = false
servers = [$names]"
export BENCH_REPO_PASSWORD=$POWA_LAB_RO_PASSWORD
