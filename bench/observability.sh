#!/usr/bin/env bash
# bench/observability.sh: the cost of observability on the data plane (issue 5's goal).
#
# The same gwctl build serves the same route to the same upstream (nginx `return 200`) twice:
# (a) `plain`, no plugins, and (b) `observed`, with the prometheus plugin (every metric flag on)
# and the opentelemetry plugin (sampling_rate 1.0, traces and logs to a real collector: rotel,
# receiving over OTLP/HTTP and dropping what it received). wrk drives a and b alternately; the
# median of the rounds is reported. Goal: observed >= 0.9 x plain requests/s.
#
#   bash bench/observability.sh                 # about 2 minutes with the defaults
#   BENCH_DURATION=3s BENCH_ROUNDS=1 bash bench/observability.sh
#   BENCH_OBSERVED=prometheus bash bench/observability.sh     # one plugin alone
#
# Knobs (shared with bench/proxy-vs-nginx.sh): BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS,
# BENCH_CONNECTIONS, BENCH_THREADS, BENCH_WORKERS (default "2" here), BENCH_GWCTL_BIN,
# BENCH_STRICT; BENCH_ROTEL = a rotel-agent binary (default: tests/.tools' venv, installed with
# pip when missing); BENCH_OUT (default bench/results/observability.json).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The helpers (nginx, wrk, gwctl build, cleanup trap, median); its main does not run.
# shellcheck source=bench/proxy-vs-nginx.sh
source "$ROOT/bench/proxy-vs-nginx.sh"

WORKERS_LIST="${BENCH_WORKERS:-2}"
OUT="${BENCH_OUT:-$ROOT/bench/results/observability.json}"
GOAL_OBSERVED_RATIO="0.90"
ROTEL_VERSION="0.0.1a15" # as tests/run.sh

ROTEL=""
need_rotel() {
    ROTEL="${BENCH_ROTEL:-}"
    local venv="$ROOT/tests/.tools/venv"
    if [[ -z "$ROTEL" ]]; then
        ROTEL="$(compgen -G "$venv/lib/python3*/site-packages/rotel/rotel-agent" | head -n1 || true)"
    fi
    if [[ -z "$ROTEL" ]]; then
        have python3 || apt_install python3
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
        mkdir -p "$ROOT/tests/.tools"
        [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || die "python3 -m venv failed"
        log "installing (pip): rotel==$ROTEL_VERSION"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "rotel==$ROTEL_VERSION" ||
            die "pip install rotel failed"
        ROTEL="$(compgen -G "$venv/lib/python3*/site-packages/rotel/rotel-agent" | head -n1 || true)"
    fi
    [[ -x "$ROTEL" ]] || die "no rotel-agent binary (set BENCH_ROTEL)"
}

# start_rotel -> sets ROTEL_HTTP (host:port of its OTLP/HTTP receiver)
start_rotel() {
    local http grpc dir="$WORK/rotel"
    mkdir -p "$dir"
    http="127.0.0.1:$(free_port)"
    grpc="127.0.0.1:$(free_port)"
    "$ROTEL" start --otlp-http-endpoint "$http" --otlp-grpc-endpoint "$grpc" \
        --exporter blackhole --pid-file "$dir/rotel.pid" --log-file "$dir/rotel.log" \
        >"$dir/out" 2>&1 &
    PIDS+=("$!")
    local deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/${http%:*}/${http#*:}") 2>/dev/null; do
        ((SECONDS < deadline)) || { cat "$dir/out" >&2; die "rotel did not listen on $http"; }
        sleep 0.1
    done
    ROTEL_HTTP="$http"
}

# The observed variant's plugins (global), for start_gwctl; BENCH_OBSERVED=prometheus or
# opentelemetry measures one of them alone (default: both, the goal's scenario).
OBSERVED="${BENCH_OBSERVED:-prometheus opentelemetry}"
gwctl_variant_config() {
    [[ "$1" == observed ]] || return 0
    echo "plugins:"
    if [[ " $OBSERVED " == *" prometheus "* ]]; then
        cat <<EOF
  - name: prometheus
    config:
      per_consumer: true
      status_code_metrics: true
      latency_metrics: true
      bandwidth_metrics: true
      upstream_health_metrics: true
EOF
    fi
    if [[ " $OBSERVED " == *" opentelemetry "* ]]; then
        cat <<EOF
  - name: opentelemetry
    config:
      traces_endpoint: http://$ROTEL_HTTP/v1/traces
      logs_endpoint: http://$ROTEL_HTTP/v1/logs
      sampling_rate: 1.0
      resource_attributes: {service.name: gwctl-bench}
EOF
    fi
}

# metric_sum STATUS_PORT NAME: the sum of a metric's samples on /metrics
metric_sum() {
    curl -s -m 5 "http://127.0.0.1:$1/metrics" |
        awk -v n="$2" '$1 ~ "^"n"({|$)" {s += $NF} END {printf "%.0f", s}'
}

obs_main() {
    need_nginx
    need_wrk
    need_curl
    need_rotel
    build_gwctl
    WORK="$(mktemp -d /tmp/gwctl-bench.XXXXXX)"
    chmod 755 "$WORK"
    local rows="$WORK/rows.tsv"
    : >"$rows"
    start_nginx upstream 1 ""
    local up_port="$STARTED_PORT"
    start_rotel
    log "upstream on 127.0.0.1:$up_port, rotel on $ROTEL_HTTP; wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds each"

    local w p round a_port b_port b_status url sent
    for w in $WORKERS_LIST; do
        start_gwctl "$w" "$up_port" plain
        a_port="$STARTED_PORT"
        start_gwctl "$w" "$up_port" observed
        b_port="$STARTED_PORT"
        b_status="$STARTED_STATUS"
        if [[ "$(seconds "$WARMUP")" -gt 0 ]]; then
            run_wrk "http://127.0.0.1:$a_port/" "$WARMUP"
            run_wrk "http://127.0.0.1:$b_port/" "$WARMUP"
        fi
        for round in $(seq 1 "$ROUNDS"); do
            for p in plain observed; do
                if [[ $p == plain ]]; then url="http://127.0.0.1:$a_port/"; else url="http://127.0.0.1:$b_port/"; fi
                run_wrk "$url" "$DURATION"
                log "workers=$w round=$round $p: $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms, non-2xx $W_NON2XX, socket errors $W_ERRS"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$p" "$round" "$W_RPS" "$W_P50" "$W_P99" "$W_NON2XX" "$W_ERRS" >>"$rows"
            done
        done
        # What the observed gateway did: requests counted, spans exported or dropped.
        sleep 2
        sent="$(metric_sum "$b_status" kong_http_requests_total)"
        log "workers=$w observed: kong_http_requests_total=$sent," \
            "gwctl_telemetry_dropped_total=$(metric_sum "$b_status" gwctl_telemetry_dropped_total)"
    done
    obs_report "$rows"
}

obs_report() {
    local rows="$1" w p rps p50 p99 bad missed=0 json="" sep=""
    echo
    printf '%-8s %-9s %10s %8s %8s\n' workers gateway req/s p50_ms p99_ms
    for w in $WORKERS_LIST; do
        for p in plain observed; do
            rps="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {print $4}' "$rows" | median)"
            p50="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {print $5}' "$rows" | median)"
            p99="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {print $6}' "$rows" | median)"
            bad="$(awk -F'\t' -v w="$w" -v p="$p" '$1 == w && $2 == p {s += $7 + $8} END {print s + 0}' "$rows")"
            printf '%-8s %-9s %10.0f %8.3f %8.3f%s\n' "$w" "$p" "$rps" "$p50" "$p99" \
                "$([[ $bad == 0 ]] || echo "   ($bad non-2xx/socket errors: figures suspect)")"
            eval "RPS_${p}_$w=$rps BAD_${p}_$w=$bad P99_${p}_$w=$p99"
        done
        local ra="RPS_plain_$w" rb="RPS_observed_$w" bb="BAD_observed_$w" pa="P99_plain_$w" pb="P99_observed_$w" ratio ok
        ratio="$(awk -v a="${!rb}" -v b="${!ra}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
        ok="$(awk -v a="${!rb}" -v b="${!ra}" -v g="$GOAL_OBSERVED_RATIO" -v e="${!bb}" 'BEGIN {print (e == 0 && a >= g * b) ? "true" : "false"}')"
        echo "workers=$w: observed/plain req/s = $ratio (goal >= $GOAL_OBSERVED_RATIO $(verdict "$ok")), p99 plain ${!pa} ms, observed ${!pb} ms"
        [[ $ok == true ]] || missed=1
        json+="$sep{\"workers\":$w,\"plain_rps\":${!ra},\"observed_rps\":${!rb},\"ratio\":$ratio,\"plain_p99_ms\":${!pa},\"observed_p99_ms\":${!pb},\"goal_met\":$ok}"
        sep=","
    done
    mkdir -p "$(dirname "$OUT")"
    cat >"$OUT" <<EOF
{
  "generated_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "git_rev": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "machine": {"nproc": $(nproc), "kernel": "$(uname -r)"},
  "config": {"duration": "$DURATION", "warmup": "$WARMUP", "connections": $CONNECTIONS, "threads": $THREADS, "rounds": $ROUNDS},
  "goal_ratio_min": $GOAL_OBSERVED_RATIO,
  "results": [$json]
}
EOF
    echo
    log "results written to ${OUT#"$ROOT"/}"
    if [[ $missed == 0 ]]; then log "goal met"; else log "goal NOT met"; fi
    [[ "$STRICT" != 1 || $missed == 0 ]] || exit 3
}

obs_main "$@"
