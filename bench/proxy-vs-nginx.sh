#!/usr/bin/env bash
# bench/proxy-vs-nginx.sh: load benchmark of the data plane, gwctl vs nginx as reverse proxies.
#
# One fixed upstream (nginx `return 200` with a ~30-byte body) is proxied through (a) nginx as a
# keep-alive reverse proxy and (b) `gwctl serve` with the same route, at the same worker count
# (1, then 2). wrk drives A and B alternately (A B A B ...) on loopback for a bounded duration;
# the median of the rounds is reported. See bench/README.md for the knobs and how to read it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DURATION="${BENCH_DURATION:-10s}"       # per wrk round; plain seconds or with s/m suffix
WARMUP="${BENCH_WARMUP:-2s}"            # one unrecorded wrk run per proxy and worker count; 0 = none
CONNECTIONS="${BENCH_CONNECTIONS:-64}"  # wrk -c
THREADS="${BENCH_THREADS:-2}"           # wrk -t
ROUNDS="${BENCH_ROUNDS:-3}"             # rounds per proxy (alternating), median reported
WORKERS_LIST="${BENCH_WORKERS:-1 2}"    # worker counts to compare
ONLY_NGINX="${BENCH_ONLY_NGINX:-0}"     # 1 = skip gwctl (no build), nginx parts only
BASELINE="${BENCH_BASELINE:-1}"         # 1 = also one wrk round straight at the upstream
STRICT="${BENCH_STRICT:-0}"             # 1 = exit 3 when a goal is missed
PLUGINS="${BENCH_PLUGINS:-0}"           # 1 = also gwctl with the plugin scenario (see README)
OUT="${BENCH_OUT:-$ROOT/bench/results/latest.json}"
# CPU pinning (taskset -c LIST), empty = no pinning (the default; see README "CPU placement").
CPUS_UPSTREAM="${BENCH_CPUS_UPSTREAM:-}"
CPUS_PROXY="${BENCH_CPUS_PROXY:-}"
CPUS_WRK="${BENCH_CPUS_WRK:-}"

# Goals from the issues.
GOAL_RPS_RATIO="1.00"  # gwctl req/s >= 1.0 x nginx
GOAL_PLUGINS_RATIO="0.85" # gwctl with jwt + jwt-claim-headers + rate-limiting >= 0.85 x plain nginx
GOAL_PLUGINS_P99_MS="0.050" # ... and its p99 at most 50 us above plain gwctl's
GOAL_IDLE_RSS_KB=20480 # < 20 MB
GOAL_LOAD_RSS_KB=61440 # < 60 MB

BODY="ok from the benchmark upstream" # 30 bytes

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# Cleanup: everything started is recorded here and stopped by the EXIT trap.
PIDS=()
WORK=""
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    [[ -z "$WORK" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Installing (apt, only what is missing).
APT_UPDATED=0
as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; elif have sudo; then sudo -n "$@"; else die "need root for: $*"; fi
}
apt_install() {
    log "installing (apt): $*"
    if [[ $APT_UPDATED -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    local out
    out="$(mktemp)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -o Dpkg::Use-Pty=0 "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        die "apt-get install $* failed"
    fi
    rm -f "$out"
}
NGINX=""
need_nginx() {
    NGINX="$(command -v nginx || true)"
    [[ -n "$NGINX" ]] || { [[ -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx; } || true
    if [[ -z "$NGINX" ]]; then
        apt_install nginx
        NGINX=/usr/sbin/nginx
    fi
}
need_wrk() { have wrk || apt_install wrk; }
need_curl() { have curl || apt_install curl ca-certificates; }

# ---------------------------------------------------------------------------------------------
# Helpers.
free_port() {
    if have python3; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            printf '%s\n' "$p"
            return
        fi
    done
    die "no free port found"
}
seconds() { # 10s | 10 | 1m -> seconds
    case "$1" in
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
    esac
}
# pinned CPULIST: sets PIN=(taskset -c CPULIST), or PIN=() when CPULIST is empty. Used as a plain
# command prefix (not a function wrapper) so that `"${PIN[@]}" cmd &` makes $! the real process.
PIN=()
pinned() { if [[ -n "$1" ]]; then PIN=(taskset -c "$1"); else PIN=(); fi; }
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }
# wait_http URL PID WHAT: until URL answers 200, the process dies, or 30 s pass.
wait_http() {
    local deadline=$((SECONDS + 30))
    until [[ "$(http_code "$1")" == 200 ]]; do
        kill -0 "$2" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
tree_rss_kb() { # RSS of a process and its direct children (nginx master + workers)
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do total=$((total + $(rss_kb "$p"))); done
    echo "$total"
}

# nginx_conf PREFIX WORKERS PORT BODY_OR_EMPTY UPSTREAM_PORT_OR_EMPTY
nginx_conf() {
    local prefix="$1" workers="$2" port="$3" upstream="$5" location
    mkdir -p "$prefix/tmp"
    if [[ -n "$upstream" ]]; then
        location="proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";"
    else
        location="default_type text/plain;
            return 200 \"$4\";"
    fi
    cat >"$prefix/nginx.conf" <<EOF
worker_processes $workers;
daemon off;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
$(if [[ -n "$upstream" ]]; then
        printf '    upstream backend {\n        server 127.0.0.1:%s;\n        keepalive 64;\n        keepalive_requests 1000000;\n    }\n' "$upstream"
    fi)
    server {
        listen 127.0.0.1:$port;
        location / {
            $location
        }
    }
}
EOF
}

# start_nginx NAME WORKERS CPUS [UPSTREAM_PORT] -> sets STARTED_PORT, STARTED_PID
start_nginx() {
    local name="$1" workers="$2" cpus="$3" upstream="${4:-}" prefix port
    prefix="$WORK/$name"
    port="$(free_port)"
    nginx_conf "$prefix" "$workers" "$port" "$BODY" "$upstream"
    pinned "$cpus"
    "${PIN[@]}" "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    STARTED_PORT="$port"
    wait_http "http://127.0.0.1:$port/" "$STARTED_PID" || {
        cat "$prefix/error.log" >&2 || true
        die "$name (nginx) did not answer 200 on 127.0.0.1:$port"
    }
}

GWCTL=""
build_gwctl() {
    if [[ -n "${BENCH_GWCTL_BIN:-}" ]]; then
        GWCTL="$(realpath "$BENCH_GWCTL_BIN")"
    else
        have cargo || die "cargo not found (needed to build gwctl)"
        log "building gwctl (cargo build --release)"
        (cd "$ROOT" && cargo build --release --bin gwctl) || die "cargo build --release failed"
        GWCTL="${CARGO_TARGET_DIR:-$ROOT/target}/release/gwctl"
        [[ "$GWCTL" == /* ]] || GWCTL="$ROOT/$GWCTL"
    fi
    [[ -x "$GWCTL" ]] || die "gwctl binary not found at $GWCTL"
}

# An HS256 JWT for the plugin scenario's consumer (iss = the credential key), valid for a day.
bench_token() {
    python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"iss": sys.argv[1], "sub": "bench-user", "exp": int(time.time()) + 86400}).encode())
sig = b64(hmac.new(sys.argv[2].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}
# The plugin scenario's consumer credential: must match bench/plugin-scenario.yml.
BENCH_JWT_KEY="bench-issuer"
BENCH_JWT_SECRET="bench-secret-0123456789abcdef0123456789"
BENCH_TOKEN=""

# gwctl_variant_config VARIANT: what the variant adds to the benchmark's declarative file
# (after the route); other benchmarks sourcing this file redefine it for their variants.
gwctl_variant_config() {
    [[ "$1" == plugins ]] || return 0
    cat "$ROOT/bench/plugin-scenario.yml"
}

# start_gwctl WORKERS UPSTREAM_PORT [plain|plugins|...] -> sets STARTED_PORT, STARTED_PID, STARTED_STATUS
start_gwctl() {
    local workers="$1" upstream="$2" variant="${3:-plain}" dir port sport
    dir="$WORK/gwctl-$workers-$variant"
    mkdir -p "$dir"
    cat >"$dir/kong.yml" <<EOF
_format_version: "3.0"
services:
  - name: bench-upstream
    url: http://127.0.0.1:$upstream
    routes:
      - name: bench-all
        paths: ["/"]
EOF
    gwctl_variant_config "$variant" >>"$dir/kong.yml"
    port="$(free_port)"
    sport="$(free_port)"
    pinned "$CPUS_PROXY"
    "${PIN[@]}" "$GWCTL" serve --proxy-listen "127.0.0.1:$port" --admin-listen off \
        --status-listen "127.0.0.1:$sport" --workers "$workers" --config "$dir/kong.yml" \
        --log-level warn >"$dir/log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    STARTED_PORT="$port"
    STARTED_STATUS="$sport"
    wait_http "http://127.0.0.1:$sport/status/ready" "$STARTED_PID" || {
        tail -n 30 "$dir/log" >&2 || true
        die "gwctl serve did not become ready (GET http://127.0.0.1:$sport/status/ready)"
    }
    local auth=()
    [[ "$variant" != plugins ]] || auth=(-H "Authorization: Bearer $BENCH_TOKEN")
    [[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "${auth[@]}" "http://127.0.0.1:$port/" 2>/dev/null || true)" == 200 ]] || {
        tail -n 30 "$dir/log" >&2 || true
        die "gwctl serve does not proxy GET / to the upstream with 200"
    }
}

# RSS sampler: writes the max VmRSS (kB) of PID seen every 0.1 s into FILE until stopped.
start_rss_sampler() {
    local pid="$1" file="$2"
    (
        max=0
        while kill -0 "$pid" 2>/dev/null; do
            r="$(rss_kb "$pid")"
            ((${r:-0} > max)) && max=$r && echo "$max" >"$file.tmp" && mv "$file.tmp" "$file"
            sleep 0.1
        done
    ) &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")
}

# to_ms VALUE: wrk latency (e.g. 812.00us, 1.23ms, 1.01s, 1.2m) -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# run_wrk URL DURATION [HEADER] -> sets W_RPS W_P50 W_P99 (ms) W_NON2XX W_ERRS (raw output kept in WORK)
WRK_N=0
run_wrk() {
    local url="$1" dur="$2" out limit
    WRK_N=$((WRK_N + 1))
    out="$WORK/wrk-$WRK_N.txt"
    limit=$(($(seconds "$dur") + 30))
    pinned "$CPUS_WRK"
    local hdr=()
    [[ -z "${3:-}" ]] || hdr=(-H "$3")
    "${PIN[@]}" timeout "$limit" wrk -t "$THREADS" -c "$CONNECTIONS" -d "$dur" --latency "${hdr[@]}" "$url" \
        >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed against $url"; }
    local p50 p99
    W_RPS="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    W_NON2XX="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
    W_NON2XX="${W_NON2XX:-0}"
    W_ERRS="$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")"
    W_ERRS="${W_ERRS:-0}"
    [[ -n "$W_RPS" && -n "$p50" && -n "$p99" ]] || { cat "$out" >&2; die "could not parse wrk output"; }
    W_P50="$(to_ms "$p50")"
    W_P99="$(to_ms "$p99")"
}

median() { # median of the numbers on stdin
    sort -g | awk '{a[NR] = $1} END {
        if (NR == 0) { print "null"; exit }
        if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# target PROXY -> sets url and hdr (the JWT for the plugin scenario) from the ports in main's scope
target() {
    hdr=""
    case "$1" in
        nginx) url="http://127.0.0.1:$a_port/" ;;
        gwctl) url="http://127.0.0.1:$b_port/" ;;
        gwplug)
            url="http://127.0.0.1:$c_port/"
            hdr="Authorization: Bearer $BENCH_TOKEN"
            ;;
    esac
}

# ---------------------------------------------------------------------------------------------
main() {
    need_nginx
    need_wrk
    need_curl
    [[ -z "$CPUS_UPSTREAM$CPUS_PROXY$CPUS_WRK" ]] || have taskset || apt_install util-linux
    [[ "$ONLY_NGINX" == 1 ]] || build_gwctl
    for w in $WORKERS_LIST; do [[ "$w" =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS: bad count '$w'"; done

    WORK="$(mktemp -d /tmp/gwctl-bench.XXXXXX)"
    chmod 755 "$WORK" # nginx workers drop to `nobody` when started as root
    local rows="$WORK/rows.tsv" rss="$WORK/rss.tsv"
    : >"$rows"
    : >"$rss"

    log "upstream: nginx, 1 worker, return 200 \"$BODY\""
    start_nginx upstream 1 "$CPUS_UPSTREAM"
    local up_port="$STARTED_PORT"
    log "upstream on 127.0.0.1:$up_port; wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds each"

    if [[ "$BASELINE" == 1 ]]; then
        log "baseline: wrk straight at the upstream"
        run_wrk "http://127.0.0.1:$up_port/" "$DURATION"
        log "direct: $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' - direct 1 "$W_RPS" "$W_P50" "$W_P99" "$W_NON2XX" "$W_ERRS" >>"$rows"
    fi

    local w proxies a_pid a_port b_pid="" b_port="" c_pid="" c_port="" round p url hdr
    [[ "$PLUGINS" != 1 ]] || BENCH_TOKEN="$(bench_token "$BENCH_JWT_KEY" "$BENCH_JWT_SECRET")"
    for w in $WORKERS_LIST; do
        start_nginx "nginx-$w" "$w" "$CPUS_PROXY" "$up_port"
        a_pid="$STARTED_PID"
        a_port="$STARTED_PORT"
        proxies="nginx"
        if [[ "$ONLY_NGINX" != 1 ]]; then
            start_gwctl "$w" "$up_port"
            b_pid="$STARTED_PID"
            b_port="$STARTED_PORT"
            proxies="nginx gwctl"
            printf '%s\tidle\t%s\n' "$w" "$(rss_kb "$b_pid")" >>"$rss"
            start_rss_sampler "$b_pid" "$WORK/rss-max-$w"
            if [[ "$PLUGINS" == 1 ]]; then
                start_gwctl "$w" "$up_port" plugins
                c_pid="$STARTED_PID"
                c_port="$STARTED_PORT"
                proxies="nginx gwctl gwplug"
            fi
        fi
        printf '%s\tnginx_idle\t%s\n' "$w" "$(tree_rss_kb "$a_pid")" >>"$rss"
        log "workers=$w: nginx proxy on :$a_port${b_port:+, gwctl on :$b_port}"

        if [[ "$(seconds "$WARMUP")" -gt 0 ]]; then
            for p in $proxies; do
                target "$p"
                run_wrk "$url" "$WARMUP" "$hdr"
            done
        fi
        for round in $(seq 1 "$ROUNDS"); do
            for p in $proxies; do
                target "$p"
                run_wrk "$url" "$DURATION" "$hdr"
                log "workers=$w round=$round $p: $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms, non-2xx $W_NON2XX, socket errors $W_ERRS"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$p" "$round" "$W_RPS" "$W_P50" "$W_P99" "$W_NON2XX" "$W_ERRS" >>"$rows"
            done
        done
        printf '%s\tnginx_load_end\t%s\n' "$w" "$(tree_rss_kb "$a_pid")" >>"$rss"
        if [[ "$ONLY_NGINX" != 1 ]]; then
            printf '%s\tload_max\t%s\n' "$w" "$(cat "$WORK/rss-max-$w" 2>/dev/null || echo 0)" >>"$rss"
            printf '%s\thwm\t%s\n' "$w" "$(awk '/^VmHWM:/ {print $2}' "/proc/$b_pid/status")" >>"$rss"
            kill "$b_pid" 2>/dev/null || true
            [[ -z "$c_pid" ]] || kill "$c_pid" 2>/dev/null || true
        fi
        kill "$a_pid" 2>/dev/null || true
        wait "$a_pid" 2>/dev/null || true
        [[ "$ONLY_NGINX" == 1 ]] || wait "$b_pid" 2>/dev/null || true
        [[ -z "$c_pid" ]] || wait "$c_pid" 2>/dev/null || true
        b_port=""
        c_pid=""
        c_port=""
    done

    report "$rows" "$rss"
}

# ---------------------------------------------------------------------------------------------
# report ROWS RSS: the table, ratios, RSS, goals; and the JSON file.
report() {
    local rows="$1" rss="$2" w p rps p50 p99 bad missed=0
    local json_results="" json_ratios="" json_rss="" json_goals=""
    local sep=""
    echo
    printf '%-8s %-7s %10s %8s %8s\n' workers proxy req/s p50_ms p99_ms
    if [[ "$BASELINE" == 1 ]]; then
        read -r rps p50 p99 < <(awk -F'\t' '$2 == "direct" {print $4, $5, $6}' "$rows")
        printf '%-8s %-7s %10.0f %8.3f %8.3f\n' - direct "$rps" "$p50" "$p99"
        json_results="{\"workers\":null,\"proxy\":\"direct\",\"rps\":$rps,\"p50_ms\":$p50,\"p99_ms\":$p99}"
        sep=","
    fi
    for w in $WORKERS_LIST; do
        for p in nginx gwctl gwplug; do
            [[ $p == nginx || "$ONLY_NGINX" != 1 ]] || continue
            [[ $p != gwplug || "$PLUGINS" == 1 ]] || continue
            rps="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {print $4}' "$rows" | median)"
            p50="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {print $5}' "$rows" | median)"
            p99="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {print $6}' "$rows" | median)"
            bad="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {s += $7 + $8} END {print s + 0}' "$rows")"
            printf '%-8s %-7s %10.0f %8.3f %8.3f%s\n' "$w" "$p" "$rps" "$p50" "$p99" \
                "$([[ $bad == 0 ]] || echo "   ($bad non-2xx/socket errors: figures suspect)")"
            json_results+="$sep{\"workers\":$w,\"proxy\":\"$p\",\"rps\":$rps,\"p50_ms\":$p50,\"p99_ms\":$p99,\"errors\":$bad,\"rounds\":["
            json_results+="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {printf "%s{\"rps\":%s,\"p50_ms\":%s,\"p99_ms\":%s,\"non2xx\":%s,\"socket_errors\":%s}", (n++ ? "," : ""), $4, $5, $6, $7, $8}' "$rows")]}"
            sep=","
            eval "RPS_${p}_$w=$rps P99_${p}_$w=$p99 BAD_${p}_$w=$bad"
        done
    done
    echo
    sep=""
    local rr pr ok_r ok_p
    for w in $WORKERS_LIST; do
        if [[ "$ONLY_NGINX" == 1 ]]; then
            echo "workers=$w: ratio gwctl/nginx: n/a (BENCH_ONLY_NGINX=1)"
            continue
        fi
        local rn="RPS_nginx_$w" rg="RPS_gwctl_$w" pn="P99_nginx_$w" pg="P99_gwctl_$w" bg="BAD_gwctl_$w"
        rr="$(awk -v a="${!rg}" -v b="${!rn}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
        pr="$(awk -v a="${!pg}" -v b="${!pn}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
        ok_r="$(awk -v a="${!rg}" -v b="${!rn}" -v g="$GOAL_RPS_RATIO" -v e="${!bg}" 'BEGIN {print (e == 0 && a >= g * b) ? "true" : "false"}')"
        ok_p="$(awk -v a="${!pg}" -v b="${!pn}" -v e="${!bg}" 'BEGIN {print (e == 0 && a <= b) ? "true" : "false"}')"
        echo "workers=$w: ratio gwctl/nginx req/s = $rr, p99 gwctl/nginx = $pr" \
            "(goals: req/s >= 1.00 $(verdict "$ok_r"), p99 <= nginx $(verdict "$ok_p"))"
        [[ $ok_r == true && $ok_p == true ]] || missed=1
        if [[ "$PLUGINS" == 1 ]]; then
            local rc="RPS_gwplug_$w" pc="P99_gwplug_$w" bc="BAD_gwplug_$w" prr pd ok_pr ok_pd
            prr="$(awk -v a="${!rc}" -v b="${!rn}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
            pd="$(awk -v a="${!pc}" -v b="${!pg}" 'BEGIN {printf "%.3f", a - b}')"
            ok_pr="$(awk -v a="${!rc}" -v b="${!rn}" -v g="$GOAL_PLUGINS_RATIO" -v e="${!bc}" 'BEGIN {print (e == 0 && a >= g * b) ? "true" : "false"}')"
            ok_pd="$(awk -v d="$pd" -v g="$GOAL_PLUGINS_P99_MS" -v e="${!bc}" 'BEGIN {print (e == 0 && d <= g) ? "true" : "false"}')"
            echo "workers=$w: plugins: ratio gwctl+plugins/nginx req/s = $prr, p99 gwctl+plugins - gwctl = $pd ms" \
                "(goals: req/s >= $GOAL_PLUGINS_RATIO $(verdict "$ok_pr"), p99 delta <= $GOAL_PLUGINS_P99_MS ms $(verdict "$ok_pd"))"
            [[ $ok_pr == true && $ok_pd == true ]] || missed=1
            json_ratios+=",{\"workers\":$w,\"plugins_rps\":$prr,\"plugins_p99_delta_ms\":$pd}"
            json_goals+=",{\"workers\":$w,\"plugins_rps_ratio_ok\":$ok_pr,\"plugins_p99_delta_ok\":$ok_pd}"
        fi
        json_ratios+="$sep{\"workers\":$w,\"rps\":$rr,\"p99\":$pr}"
        json_goals+="$sep{\"workers\":$w,\"rps_ratio_ok\":$ok_r,\"p99_ok\":$ok_p}"
        sep=","
    done
    echo
    sep=""
    local idle load hwm nidle nload ok_i ok_l
    for w in $WORKERS_LIST; do
        nidle="$(awk -F'\t' -v w="$w" '$1 == w && $2 == "nginx_idle" {print $3}' "$rss")"
        nload="$(awk -F'\t' -v w="$w" '$1 == w && $2 == "nginx_load_end" {print $3}' "$rss")"
        if [[ "$ONLY_NGINX" == 1 ]]; then
            echo "workers=$w: nginx proxy RSS (master+workers) idle $(mb "$nidle") MB, after load $(mb "$nload") MB"
            json_rss+="$sep{\"workers\":$w,\"nginx_idle_kb\":$nidle,\"nginx_after_load_kb\":$nload}"
        else
            idle="$(awk -F'\t' -v w="$w" '$1 == w && $2 == "idle" {print $3}' "$rss")"
            load="$(awk -F'\t' -v w="$w" '$1 == w && $2 == "load_max" {print $3}' "$rss")"
            hwm="$(awk -F'\t' -v w="$w" '$1 == w && $2 == "hwm" {print $3}' "$rss")"
            ok_i="$([[ $idle -lt $GOAL_IDLE_RSS_KB ]] && echo true || echo false)"
            ok_l="$([[ $load -lt $GOAL_LOAD_RSS_KB && $hwm -lt $GOAL_LOAD_RSS_KB ]] && echo true || echo false)"
            echo "workers=$w: gwctl RSS idle $(mb "$idle") MB (goal < 20 MB $(verdict "$ok_i")), max under load" \
                "$(mb "$load") MB, peak VmHWM $(mb "$hwm") MB (goal < 60 MB $(verdict "$ok_l"));" \
                "nginx proxy (master+workers) idle $(mb "$nidle") MB, after load $(mb "$nload") MB"
            [[ $ok_i == true && $ok_l == true ]] || missed=1
            json_rss+="$sep{\"workers\":$w,\"gwctl_idle_kb\":$idle,\"gwctl_load_max_kb\":$load,\"gwctl_hwm_kb\":$hwm,\"nginx_idle_kb\":$nidle,\"nginx_after_load_kb\":$nload}"
            json_goals+=",{\"workers\":$w,\"idle_rss_ok\":$ok_i,\"load_rss_ok\":$ok_l}"
        fi
        sep=","
    done

    mkdir -p "$(dirname "$OUT")"
    local rev nginx_v wrk_v
    rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nginx_v="$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    wrk_v="$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')"
    cat >"$OUT" <<EOF
{
  "generated_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "git_rev": "$rev",
  "machine": {"nproc": $(nproc), "kernel": "$(uname -r)"},
  "tools": {"nginx": "$nginx_v", "wrk": "$wrk_v"},
  "config": {"duration": "$DURATION", "warmup": "$WARMUP", "connections": $CONNECTIONS, "threads": $THREADS,
             "rounds": $ROUNDS, "workers": [$(echo "$WORKERS_LIST" | xargs | tr ' ' ',')], "only_nginx": $([[ "$ONLY_NGINX" == 1 ]] && echo true || echo false),
             "cpus": {"upstream": "$CPUS_UPSTREAM", "proxy": "$CPUS_PROXY", "wrk": "$CPUS_WRK"}},
  "results": [$json_results],
  "ratios_gwctl_over_nginx": [$json_ratios],
  "rss": [$json_rss],
  "goals": {"rps_ratio_min": $GOAL_RPS_RATIO, "idle_rss_kb_max": $GOAL_IDLE_RSS_KB, "load_rss_kb_max": $GOAL_LOAD_RSS_KB,
            "checks": [$json_goals], "all_met": $([[ "$ONLY_NGINX" != 1 && $missed == 0 ]] && echo true || echo false)}
}
EOF
    echo
    log "results written to ${OUT#"$ROOT"/}"
    if [[ "$ONLY_NGINX" != 1 ]]; then
        if [[ $missed == 0 ]]; then log "all goals met"; else log "some goals NOT met"; fi
        [[ "$STRICT" != 1 || $missed == 0 ]] || exit 3
    fi
}
verdict() { if [[ $1 == true ]]; then echo "MET"; else echo "MISSED"; fi; }
mb() { awk -v k="${1:-0}" 'BEGIN {printf "%.1f", k / 1024}'; }

# Run only when executed, so that other benchmarks (bench/observability.sh) can source the helpers.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
