#!/usr/bin/env bash
# bench/compare: spangate side by side with nginx pass-through and the sink
# itself, on loopback, in interleaved rounds. Prints one markdown table.
#
#   bench/compare/run.sh                 # full run (~10 min on 2 cores)
#   SMOKE=1 bench/compare/run.sh         # a short smoke (CI): 1 s rounds
#
# Knobs (environment): DURATION (s per round, 10), ROUNDS (3), CONNS (32),
# SPANS ("1 50 500"), ENCODINGS ("protobuf json"), TOKENS ("1 1000"),
# SPANGATE_BIN (skip the release build), BENCH_VENV, KEEP=1 (keep the work dir).
#
# Layout: wrk and the sink (an nginx answering 200 at once) share core 0;
# the proxy under test (nginx `proxy_pass` with a static credential header,
# or spangate with its full path: token verify from cache, policy, stamping,
# injected credential, audit line, forward) has core 1 to itself.
# CPU per request is the proxy's own user+system time divided by requests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ -n "${SMOKE:-}" ]; then
  DURATION=${DURATION:-1}; ROUNDS=${ROUNDS:-1}; SPANS=${SPANS:-"1 50"}
  ENCODINGS=${ENCODINGS:-"protobuf"}; TOKENS=${TOKENS:-"1 1000"}
fi
DURATION=${DURATION:-10}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-32}
SPANS=${SPANS:-"1 50 500"}; ENCODINGS=${ENCODINGS:-"protobuf json"}; TOKENS=${TOKENS:-"1 1000"}
venv=${BENCH_VENV:-/tmp/spangate-bench-venv}

say() { printf '==> %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
need_apt=()
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${need_apt[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null; }
  else
    echo "bench/compare needs: ${need_apt[*]} (apt-get install them, or run as root)" >&2; exit 1
  fi
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
command -v node >/dev/null || { echo "bench/compare needs node (to mint tokens)" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import opentelemetry.proto' 2>/dev/null; then
  say "python venv with opentelemetry-proto ($venv)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check opentelemetry-proto==1.45.2 protobuf==7.36.2
fi

# --- spangate ----------------------------------------------------------------
if [ -z "${SPANGATE_BIN:-}" ]; then
  say "cargo build --release --locked"
  (cd "$root" && cargo build --release --locked --quiet)
  SPANGATE_BIN=${CARGO_TARGET_DIR:-$root/target}/release/spangate
fi

# --- cores -------------------------------------------------------------------
if [ "$(nproc)" -ge 2 ]; then pin_load="taskset -c 0"; pin_proxy="taskset -c 1"; pinned=yes
else pin_load=""; pin_proxy=""; pinned=no; fi

work=$(mktemp -d /tmp/spangate-bench.XXXXXX)
chmod 755 "$work"   # nginx workers (www-data when started as root) serve the JWKS from here
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "work dir kept: $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; return 1
}

say "bodies and tokens"
max_tokens=1; for t in $TOKENS; do [ "$t" -gt "$max_tokens" ] && max_tokens=$t; done
"$venv/bin/python" "$here/gen_bodies.py" "$work" $SPANS
node "$here/mint.mjs" "$work" "$max_tokens"
head -n 1 "$work/tokens.txt" > "$work/tokens-1.txt"
cp "$work/tokens.txt" "$work/tokens-$max_tokens.txt"

sink_port=$(free_port); nginx_port=$(free_port); sg_port=$(free_port); admin_port=$(free_port)
upstream_token=bench-upstream-$RANDOM$RANDOM

# --- sink: nginx answering an empty OTLP success (and serving the JWKS) -----
mkdir -p "$work/sink/logs" "$work/proxy/logs"
cat > "$work/sink/nginx.conf" <<CONF
worker_processes 1;
pid $work/sink/nginx.pid;
error_log $work/sink/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_buffer_size 1m;
  client_max_body_size 64m;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$sink_port;
    location = /jwks.json { default_type application/json; alias $work/jwks.json; }
    location / { default_type application/x-protobuf; return 200 ''; }
  }
}
CONF
$pin_load "$nginx_bin" -p "$work/sink" -c "$work/sink/nginx.conf" -g 'daemon off;' &
pids+=($!); sink_master=$!

# --- nginx pass-through with a static credential header ---------------------
cat > "$work/proxy/nginx.conf" <<CONF
worker_processes 1;
pid $work/proxy/nginx.pid;
error_log $work/proxy/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_buffer_size 1m;
  client_max_body_size 64m;
  keepalive_requests 1000000;
  upstream sink { server 127.0.0.1:$sink_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_set_header lightstep-access-token "$upstream_token";
    }
  }
}
CONF
$pin_proxy "$nginx_bin" -p "$work/proxy" -c "$work/proxy/nginx.conf" -g 'daemon off;' &
pids+=($!); nginx_master=$!

# --- spangate: the shipped shape, pointed at the sink -----------------------
mkdir -p "$work/policies"
cat > "$work/spangate.yaml" <<CONF
server: { listen: 127.0.0.1:$sg_port, max_body: 16MiB, memory_budget: 256MiB }
admin: { listen: 127.0.0.1:$admin_port }
providers:
  bench:
    issuer: https://bench.spangate.test
    audiences: [spangate-bench]
    jwks_uri: http://127.0.0.1:$sink_port/jwks.json
    algorithms: [ES256]
upstreams:
  sink: { url: http://127.0.0.1:$sink_port/v1/traces, credential_header: lightstep-access-token }
secrets:
  bootstrap: { sink-token: { env: BENCH_UPSTREAM_TOKEN } }
audit: { file: $work/audit.log }
policies: $work/policies
CONF
cat > "$work/policies/bench.yaml" <<'CONF'
endpoints:
  traces: { path: /v1/traces, upstream: sink }
roles:
  publisher:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
      rate: { requests_per_second: 1000000, spans_per_second: 1000000000 }
bindings:
  - name: bench-publishers
    role: publisher
    subjects: [{ provider: bench, claims: { environment: production } }]
    credential: sink-token
    stamp:
      deployment.environment.name: "${claims.environment}"
      enduser.id: "${claims.sub}"
CONF
wait_port "$sink_port"
BENCH_UPSTREAM_TOKEN=$upstream_token RUST_LOG=warn \
  $pin_proxy "$SPANGATE_BIN" serve --config "$work/spangate.yaml" >"$work/spangate.log" 2>&1 &
pids+=($!); sg_pid=$!
wait_port "$nginx_port"; wait_port "$sg_port"

# Sanity: one request through each path must be a 200, or the numbers mean nothing.
check() {
  local code i
  for i in $(seq 1 50); do  # the first answers may be 503 until the JWKS is fetched
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$1/v1/traces" \
    -H 'Content-Type: application/x-protobuf' -H "Authorization: Bearer $(head -n1 "$work/tokens.txt")" \
    --data-binary @"$work/traces-$(echo $SPANS | cut -d' ' -f1).pb")
  [ "$code" = 503 ] || break; sleep 0.2; done
  [ "$code" = 200 ] || { echo "$2 answered $code to a valid batch; see $work" >&2; KEEP=1; exit 1; }
}
check "$sink_port" sink; check "$nginx_port" nginx; check "$sg_port" spangate

tree_pids() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { local t=0 p; for p in $(tree_pids "$1"); do
  [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
rss_kib() { local t=0 p; for p in $(tree_pids "$1"); do
  [ -r "/proc/$p/status" ] && t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
hz=$(getconf CLK_TCK)
idle_rss=$(rss_kib "$sg_pid")

results="$work/results.tsv"
printf 'case\ttarget\tround\treq_s\tp50_us\tp99_us\tcpu_us\trss_kib\terrors\n' > "$results"
run_one() { # case target port pid body type tokens round
  local before after out
  before=$(cpu_ticks "$4")
  out=$(BENCH_BODY="$5" BENCH_TYPE="$6" BENCH_TOKENS="$7" \
    $pin_load wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$here/post.lua" "http://127.0.0.1:$3" | grep '^BENCH')
  after=$(cpu_ticks "$4")
  python3 - "$1" "$2" "$8" "$before" "$after" "$hz" "$(rss_kib "$4")" "$out" >> "$results" <<'PY'
import sys
case, target, rnd, before, after, hz, rss, line = sys.argv[1:]
kv = dict(x.split("=") for x in line.split()[1:])
n = int(kv["requests"]); secs = int(kv["duration_us"]) / 1e6
cpu = (int(after) - int(before)) * 1e6 / int(hz) / max(n, 1)
print("\t".join([case, target, rnd, f"{n / secs:.0f}", kv["p50_us"], kv["p99_us"], f"{cpu:.1f}", rss,
                 str(int(kv["errors"]) + int(kv["non2xx"]))]))
PY
}

say "rounds: ${ROUNDS} × ${DURATION}s, ${CONNS} connections, spans: $SPANS, encodings: $ENCODINGS, tokens: $TOKENS"
for spans in $SPANS; do
  for enc in $ENCODINGS; do
    if [ "$enc" = json ]; then body="$work/traces-$spans.json"; type=application/json
    else body="$work/traces-$spans.pb"; type=application/x-protobuf; fi
    for r in $(seq 1 "$ROUNDS"); do
      for tok in $TOKENS; do
        case_name="$spans spans, $enc, $tok token$([ "$tok" = 1 ] || echo s)"
        # The sink and nginx ignore tokens: measure them once per round (with the 1-token case).
        if [ "$tok" = "$(echo $TOKENS | cut -d' ' -f1)" ]; then
          run_one "$spans|$enc" direct "$sink_port" "$sink_master" "$body" "$type" "" "$r"
          run_one "$spans|$enc" nginx "$nginx_port" "$nginx_master" "$body" "$type" "" "$r"
        fi
        run_one "$spans|$enc" "spangate ($tok token$([ "$tok" = 1 ] || echo s))" "$sg_port" "$sg_pid" \
          "$body" "$type" "$work/tokens-$tok.txt" "$r"
        say "done: $case_name, round $r"
      done
    done
  done
done

python3 "$here/report.py" "$results" "$pinned" "$DURATION" "$ROUNDS" "$CONNS" "$(nproc)" "$idle_rss"
