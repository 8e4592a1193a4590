#!/usr/bin/env bash
# bench/grpc-vs-direct.sh: unary gRPC throughput through gwctl vs straight at the upstream.
#
# One upstream: `grpc-fixture-server` (tonic, tests/fixtures/grpc) on a free loopback port.
# (a) direct: `grpc-load` calls Fixture/Unary on the upstream; (b) via gwctl: `gwctl serve` with
# a `grpc://` service and a grpc route for the fixture, and the same load through its proxy
# listener. Rounds alternate (direct, gwctl, direct, gwctl, ...) after one unrecorded warm-up
# each; the medians are compared. Goal (issue 8): gwctl >= 0.8x direct requests/s.
#
# ghz is not packaged for apt; `grpc-load` (tests/fixtures/grpc/src/bin/load.rs) is a small
# bounded tonic load client: N HTTP/2 connections, C workers, back-to-back unary calls for a
# fixed duration, p50/p99 latency.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DURATION="${BENCH_DURATION:-10}"        # seconds per measured round
WARMUP="${BENCH_WARMUP:-2}"             # seconds of unmeasured calls at the start of each round
ROUNDS="${BENCH_ROUNDS:-3}"             # rounds per side, median reported
CONNECTIONS="${BENCH_CONNECTIONS:-4}"   # HTTP/2 connections of the load client
CONCURRENCY="${BENCH_CONCURRENCY:-64}"  # concurrent calls
PAYLOAD="${BENCH_PAYLOAD:-16}"          # bytes of the request's message field
WORKERS="${BENCH_WORKERS:-2}"           # gwctl serve --workers
STRICT="${BENCH_STRICT:-0}"             # 1 = exit 3 when the goal is missed
GOAL_RATIO="0.80"

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

PIDS=()
WORK="$(mktemp -d /tmp/gwctl-grpc-bench.XXXXXX)"
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Binaries: prebuilt (BENCH_GWCTL_BIN, BENCH_FIXTURE_BIN_DIR) or cargo build --release.
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$ROOT/$TARGET"
GWCTL="${BENCH_GWCTL_BIN:-}"
BIN_DIR="${BENCH_FIXTURE_BIN_DIR:-}"
if [[ -z "$GWCTL" || -z "$BIN_DIR" ]]; then
    have cargo || die "cargo not found"
    log "building gwctl, grpc-fixture-server and grpc-load (cargo build --release)"
    (cd "$ROOT" && cargo build --release --bin gwctl && cargo build --release -p grpc-fixture --bins) \
        || die "cargo build --release failed"
    GWCTL="${GWCTL:-$TARGET/release/gwctl}"
    BIN_DIR="${BIN_DIR:-$TARGET/release}"
fi
SERVER="$BIN_DIR/grpc-fixture-server"
LOAD="$BIN_DIR/grpc-load"
for b in "$GWCTL" "$SERVER" "$LOAD"; do [[ -x "$b" ]] || die "binary not found: $b"; done

# wait_line FILE PATTERN PID: the first line of FILE matching PATTERN (bounded: 20 s).
wait_line() {
    local file="$1" pattern="$2" pid="$3" line
    for _ in $(seq 1 200); do
        line="$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

"$SERVER" --listen 127.0.0.1:0 >"$WORK/upstream.log" 2>&1 &
PIDS+=("$!")
line="$(wait_line "$WORK/upstream.log" '^listening ' "$!")" || die "grpc-fixture-server did not start: $(cat "$WORK/upstream.log")"
UPSTREAM="${line#listening }"
log "upstream (tonic) on $UPSTREAM"

cat >"$WORK/kong.yml" <<EOF
_format_version: "3.0"
services:
  - name: fixture
    url: grpc://$UPSTREAM
    routes:
      - name: fixture
        protocols: [grpc]
        paths: ["/gwctl.fixture.v1.Fixture/"]
        strip_path: false
EOF
"$GWCTL" --log-format text serve --proxy-listen 127.0.0.1:0 --admin-listen off --status-listen off \
    --workers "$WORKERS" --config "$WORK/kong.yml" --log-level info >"$WORK/gwctl.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
line="$(wait_line "$WORK/gwctl.log" 'listening proxy=' "$GW_PID")" || die "gwctl serve did not start: $(tail -n 20 "$WORK/gwctl.log")"
PROXY="$(sed -E 's/.*proxy=([^ ]+).*/\1/' <<<"$line")"
log "gwctl (workers $WORKERS) on $PROXY"

# run TARGET -> prints the load client's line (bounded by timeout)
run() {
    timeout $((DURATION + WARMUP + 30)) "$LOAD" --target "http://$1" --connections "$CONNECTIONS" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" --payload "$PAYLOAD"
}
field() { sed -E "s/.*$1=([0-9.]+).*/\1/" <<<"$2"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

DIRECT=()
VIA=()
log "load: $CONNECTIONS connections, $CONCURRENCY concurrent calls, ${DURATION}s rounds (+${WARMUP}s warm-up), $ROUNDS rounds each"
for r in $(seq 1 "$ROUNDS"); do
    d="$(run "$UPSTREAM")" || die "direct round $r failed: $d"
    log "round $r direct: $d"
    g="$(run "$PROXY")" || die "gwctl round $r failed: $g"
    log "round $r gwctl:  $g"
    DIRECT+=("$d")
    VIA+=("$g")
done

d_rps="$(for l in "${DIRECT[@]}"; do field rps "$l"; done | median)"
g_rps="$(for l in "${VIA[@]}"; do field rps "$l"; done | median)"
d_p99="$(for l in "${DIRECT[@]}"; do field p99_us "$l"; done | median)"
g_p99="$(for l in "${VIA[@]}"; do field p99_us "$l"; done | median)"
ratio="$(awk -v g="$g_rps" -v d="$d_rps" 'BEGIN {printf "%.2f", (d > 0 ? g / d : 0)}')"
ok="$(awk -v r="$ratio" -v goal="$GOAL_RATIO" 'BEGIN {print (r + 0 >= goal + 0) ? "yes" : "no"}')"

printf '\n| | req/s (median) | p99 (us, median) |\n|---|---|---|\n'
printf '| direct (tonic upstream) | %.0f | %s |\n' "$d_rps" "$d_p99"
printf '| via gwctl (workers %s) | %.0f | %s |\n' "$WORKERS" "$g_rps" "$g_p99"
printf '\nratio gwctl/direct: %s (goal >= %s: %s)\n' "$ratio" "$GOAL_RATIO" "$ok"
if [[ "$ok" != yes && "$STRICT" == 1 ]]; then
    exit 3
fi
