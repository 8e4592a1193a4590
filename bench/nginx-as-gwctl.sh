#!/usr/bin/env bash
# bench/nginx-as-gwctl.sh: a stand-in for `gwctl serve` made of nginx, for an A/A calibration run
# of bench/proxy-vs-nginx.sh: BENCH_GWCTL_BIN=bench/nginx-as-gwctl.sh bash bench/proxy-vs-nginx.sh
# Both "proxies" are then the same nginx, so any ratio away from 1.00 is measurement noise.
# Accepts only the flags the benchmark passes; serves /status/ready with 200 on --status-listen.
set -euo pipefail
[[ "$1" == serve ]]; shift
while [[ $# -gt 0 ]]; do case "$1" in
  --proxy-listen) PL=$2; shift 2;; --status-listen) SL=$2; shift 2;; --workers) W=$2; shift 2;;
  --config) C=$2; shift 2;; --admin-listen|--log-level) shift 2;; *) echo "bad arg $1" >&2; exit 2;; esac; done
UP=$(awk '/url:/ {print $2}' "$C")
D=$(dirname "$C")/nginx; mkdir -p "$D/tmp"
cat > "$D/nginx.conf" <<CONF
worker_processes $W; daemon off; pid $D/pid; error_log $D/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $D/tmp/b; proxy_temp_path $D/tmp/p; fastcgi_temp_path $D/tmp/f; uwsgi_temp_path $D/tmp/u; scgi_temp_path $D/tmp/s;
  keepalive_requests 1000000;
  upstream b { server ${UP#http://}; keepalive 64; }
  server { listen $PL; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen $SL; location = /status/ready { return 200 "{}"; } }
}
CONF
echo "listening proxy=$PL admin=off status=$SL" >&2
exec "$(command -v nginx || echo /usr/sbin/nginx)" -p "$D" -c "$D/nginx.conf" -e "$D/error.log"
