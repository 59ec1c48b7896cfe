#!/usr/bin/env bash
# bench/compare: spangate side by side with nginx pass-through and the sink
# itself, on loopback, in interleaved rounds, over OTLP/HTTP and OTLP/gRPC.
# Prints one markdown table.
#
#   bench/compare/run.sh                 # full run (~10 min on 2 cores)
#   SMOKE=1 bench/compare/run.sh         # a short smoke (CI): 1 s rounds
#
# Knobs (environment): DURATION (s per round, 10), ROUNDS (3), CONNS (32),
# SPANS ("1 50 500"), ENCODINGS ("protobuf json"), TOKENS ("1 1000"),
# GRPC (1: also the OTLP/gRPC rows; 0: HTTP only), GRPC_CONNS (4) and
# GRPC_STREAMS (8): h2load's connections and concurrent streams per connection
# (4 × 8 = 32 calls in flight, as wrk's 32 connections),
# LATENCY (1: also the latency rows; 0: none), FLOOR (1: also the bare hyper
# pass-through, bench/compare/passthrough.rs: spangate's HTTP stack without
# spangate's work; 0: none), FLOOR_BIN (skip its build),
# SPANGATE_BIN (skip the release build), BENCH_VENV, KEEP=1 (keep the work dir).
#
# Latency rows (LATENCY=1): after the rounds, for each batch size of the first
# encoding, h2load (HTTP/1.1, CONNS connections) sends at a fixed rate of half
# spangate's median maximum (1 token) from the rounds, to the sink directly,
# to nginx and to spangate in turn; p50/p99 from its per-request log, and
# spangate's added p99 over direct at that rate.
#
# Layout: wrk and the sink (an nginx answering 200 at once) share core 0;
# the proxy under test (nginx `proxy_pass` with a static credential header,
# or spangate with its full path: token verify from cache, policy, stamping,
# injected credential, audit line, forward) has core 1 to itself.
# CPU per request is the proxy's own user+system time divided by requests.
#
# OTLP/gRPC rows: h2load sends unary TraceService/Export calls (the same
# protobuf batches in a gRPC frame, one bearer token: h2load sends the same
# headers on every call) to an h2c nginx sink answering an empty OK Export
# (status 200, one empty message, trailer grpc-status 0), to nginx `grpc_pass`
# with a static credential header, and to two spangates on their gRPC
# listener: one with a gRPC upstream (gRPC→gRPC), one with the HTTP sink as
# its upstream (gRPC→HTTP). A gRPC error is an HTTP 200 with a non-zero
# grpc-status, which h2load cannot see: spangate's errors are counted from
# its audit lines (grpc_status other than 0), nginx's from h2load's failed
# requests (its own failures are 502/504).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ -n "${SMOKE:-}" ]; then
  DURATION=${DURATION:-1}; ROUNDS=${ROUNDS:-1}; SPANS=${SPANS:-"1 50"}
  ENCODINGS=${ENCODINGS:-"protobuf"}; TOKENS=${TOKENS:-"1 1000"}
fi
DURATION=${DURATION:-10}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-32}
GRPC=${GRPC:-1}; LATENCY=${LATENCY:-1}; FLOOR=${FLOOR:-1}; GRPC_CONNS=${GRPC_CONNS:-4}; GRPC_STREAMS=${GRPC_STREAMS:-8}
SPANS=${SPANS:-"1 50 500"}; ENCODINGS=${ENCODINGS:-"protobuf json"}; TOKENS=${TOKENS:-"1 1000"}
venv=${BENCH_VENV:-/tmp/spangate-bench-venv}

say() { printf '==> %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
need_apt=()
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ "$GRPC" = 1 ] || [ "$LATENCY" = 1 ]; then  # h2load: gRPC load and fixed-rate runs; nghttp checks a call's trailers
  { command -v h2load && command -v nghttp; } >/dev/null 2>&1 || need_apt+=(nghttp2-client)
fi
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

if [ "$FLOOR" = 1 ] && [ -z "${FLOOR_BIN:-}" ]; then
  say "cargo build --release --locked --example passthrough"
  (cd "$root" && cargo build --release --locked --quiet --example passthrough)
  FLOOR_BIN=${CARGO_TARGET_DIR:-$root/target}/release/examples/passthrough
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
  if [ -n "${KEEP:-}" ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
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
read -r -a span_list <<<"$SPANS"; read -r -a token_list <<<"$TOKENS"
"$venv/bin/python" "$here/gen_bodies.py" "$work" "${span_list[@]}"
node "$here/mint.mjs" "$work" "$max_tokens"
head -n 1 "$work/tokens.txt" > "$work/tokens-1.txt"
cp "$work/tokens.txt" "$work/tokens-$max_tokens.txt"

sink_port=$(free_port); nginx_port=$(free_port); sg_port=$(free_port); admin_port=$(free_port)
floor_port=$(free_port)
gsink_port=$(free_port); gnginx_port=$(free_port)
upstream_token=bench-upstream-$RANDOM$RANDOM

# --- sink: nginx answering an empty OTLP success (and serving the JWKS) -----
# Its second server is the gRPC sink (h2c), answering an empty OK Export: a
# 5-byte file (one empty gRPC message: flag 0, length 0) as application/grpc
# with the trailer grpc-status 0. The mirror makes nginx read the whole request
# before it answers, as a gRPC server does (answering early ends the stream
# with RST_STREAM, which nginx grpc_pass takes as an error on its kept-alive
# connection); the static file answers POST with 405, turned into a GET of it.
mkdir -p "$work/sink/logs" "$work/proxy/logs" "$work/sink/grpc"
printf '\0\0\0\0\0' > "$work/sink/grpc/ok"
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
  server {
    listen 127.0.0.1:$gsink_port http2;
    location / {
      mirror /drained;
      root $work/sink/grpc;
      try_files /ok =404;
      error_page 405 =200 /ok;
      default_type application/grpc;
      add_trailer grpc-status 0 always;
    }
    location = /drained { internal; return 204; }
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
  upstream grpcsink { server 127.0.0.1:$gsink_port; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$gnginx_port http2;
    location / {
      grpc_pass grpc://grpcsink;
      grpc_set_header Authorization "";
      grpc_set_header lightstep-access-token "$upstream_token";
    }
  }
}
CONF
$pin_proxy "$nginx_bin" -p "$work/proxy" -c "$work/proxy/nginx.conf" -g 'daemon off;' &
pids+=($!); nginx_master=$!

# --- the floor: a bare pass-through on spangate's HTTP stack ------------------
if [ "$FLOOR" = 1 ]; then
  $pin_proxy "$FLOOR_BIN" "127.0.0.1:$floor_port" "http://127.0.0.1:$sink_port/v1/traces" \
    lightstep-access-token "$upstream_token" >"$work/passthrough.log" 2>&1 &
  pids+=($!); floor_pid=$!
fi

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

# --- spangate on its gRPC listener: one per upstream protocol ----------------
# The same policies, provider and credential; `gg` forwards over OTLP/gRPC to
# the gRPC sink, `gh` over OTLP/HTTP to the HTTP sink.
start_grpc_spangate() { # name upstream-line
  local http_port grpc_port adm
  http_port=$(free_port); grpc_port=$(free_port); adm=$(free_port)
  sed -e "s|^server: .*|server: { listen: 127.0.0.1:$http_port, grpc_listen: 127.0.0.1:$grpc_port, max_body: 16MiB, memory_budget: 256MiB }|" \
      -e "s|^admin: .*|admin: { listen: 127.0.0.1:$adm }|" \
      -e "s|^  sink: .*|  sink: $2|" \
      -e "s|^audit: .*|audit: { file: $work/audit-$1.log }|" "$work/spangate.yaml" > "$work/spangate-$1.yaml"
  BENCH_UPSTREAM_TOKEN=$upstream_token RUST_LOG=warn \
    $pin_proxy "$SPANGATE_BIN" serve --config "$work/spangate-$1.yaml" >"$work/spangate-$1.log" 2>&1 &
  pids+=($!); started_pid=$!; started_port=$grpc_port
  wait_port "$grpc_port"
}
if [ "$GRPC" = 1 ]; then
  start_grpc_spangate gg "{ url: http://127.0.0.1:$gsink_port, protocol: grpc, credential_header: lightstep-access-token }"
  sg_gg_pid=$started_pid; sg_gg_port=$started_port
  start_grpc_spangate gh "{ url: http://127.0.0.1:$sink_port/v1/traces, credential_header: lightstep-access-token }"
  sg_gh_pid=$started_pid; sg_gh_port=$started_port
  wait_port "$gsink_port"; wait_port "$gnginx_port"
fi

# Sanity: one request through each path must be a 200, or the numbers mean nothing.
check() {
  local code
  for _ in $(seq 1 50); do  # the first answers may be 503 until the JWKS is fetched
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$1/v1/traces" \
    -H 'Content-Type: application/x-protobuf' -H "Authorization: Bearer $(head -n1 "$work/tokens.txt")" \
    --data-binary @"$work/traces-${span_list[0]}.pb")
  [ "$code" = 503 ] || break; sleep 0.2; done
  [ "$code" = 200 ] || { echo "$2 answered $code to a valid batch; see $work" >&2; KEEP=1; exit 1; }
}
check "$sink_port" sink; check "$nginx_port" nginx; check "$sg_port" spangate
if [ "$FLOOR" = 1 ]; then wait_port "$floor_port"; check "$floor_port" "bare hyper pass-through"; fi

# gRPC: one Export call through each path, with nghttp (a real HTTP/2 client):
# the answer must be :status 200 and carry grpc-status 0 (in its trailers).
grpc_path=/opentelemetry.proto.collector.trace.v1.TraceService/Export
check_grpc() {
  local out
  for _ in $(seq 1 50); do  # UNAVAILABLE (14) until the JWKS is fetched
    out=$(nghttp -v -H 'content-type: application/grpc' -H 'te: trailers' \
      -H "authorization: Bearer $(head -n1 "$work/tokens.txt")" \
      -d "$work/traces-${span_list[0]}.grpc" "http://127.0.0.1:$1$grpc_path" 2>&1 | tr -d '\0' || true)
    grep -q 'grpc-status: 14$' <<<"$out" || break; sleep 0.2; done
  if ! grep -q ':status: 200$' <<<"$out" || ! grep -q 'grpc-status: 0$' <<<"$out"; then
    echo "$2 did not answer a valid Export call with grpc-status 0; see $work" >&2
    grep -E ':status|grpc-' <<<"$out" >&2 || true
    KEEP=1; exit 1
  fi
}
if [ "$GRPC" = 1 ]; then
  check_grpc "$gsink_port" "gRPC sink"; check_grpc "$gnginx_port" "nginx grpc_pass"
  check_grpc "$sg_gg_port" "spangate gRPC→gRPC"; check_grpc "$sg_gh_port" "spangate gRPC→HTTP"
fi

tree_pids() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { local t=0 p; for p in $(tree_pids "$1"); do
  [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
rss_kib() { local t=0 p; for p in $(tree_pids "$1"); do
  [ -r "/proc/$p/status" ] && t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
hz=$(getconf CLK_TCK)
idle_rss=$(rss_kib "$sg_pid")

results="$work/results.tsv"
printf 'case\ttarget\tround\treq_s\tp50_us\tp99_us\tcpu_us\trss_kib\terrors\tcancelled\n' > "$results"
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
                 str(int(kv["errors"]) + int(kv["non2xx"])), "0"]))
PY
}

# One h2load run of DURATION seconds. h2load's summary has only min/max/mean
# of the call time, so p50/p99 come from its per-call log (--log-file).
run_grpc_one() { # case target port pid body round [audit-file]
  local before after out offset=0 log="$work/h2load.log"
  [ -n "${7:-}" ] && offset=$(stat -c %s "$7")
  rm -f "$log"  # h2load appends to it
  before=$(cpu_ticks "$4")
  out=$($pin_load h2load -D "$DURATION" -c "$GRPC_CONNS" -m "$GRPC_STREAMS" -d "$5" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "authorization: Bearer $(head -n1 "$work/tokens.txt")" \
    --log-file="$log" "http://127.0.0.1:$3$grpc_path")
  after=$(cpu_ticks "$4")
  [ -n "${7:-}" ] && sleep 0.3  # the audit writer lingers a few ms before it writes
  python3 - "$1" "$2" "$6" "$before" "$after" "$hz" "$(rss_kib "$4")" "$log" "${7:-}" "$offset" "$out" \
    >> "$results" <<'PY'
import json, re, sys
case, target, rnd, before, after, hz, rss, log, audit, offset, out = sys.argv[1:]
m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
r = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed", out)
if not m or not r:
    sys.exit(f"h2load gave no summary for {target}:\n{out}")
req_s, n, errors = float(m.group(1)), int(r.group(1)), int(r.group(2))
lat = sorted(int(line.split("\t")[2]) for line in open(log) if line.strip())
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
cancelled = 0
if audit:  # a gRPC failure is a 200 to h2load: count spangate's non-OK answers
    with open(audit, "rb") as f:
        f.seek(int(offset))
        for line in f:
            a = json.loads(line)
            if a.get("transport") == "grpc" and a.get("grpc_status") != 0:
                # When the round's time is up h2load resets the calls still
                # uploading (CANCELLED, "body_aborted"): the client's doing,
                # counted apart; nginx's rows cannot see them at all.
                if a.get("reason") == "body_aborted":
                    cancelled += 1
                else:
                    errors += 1
cpu = (int(after) - int(before)) * 1e6 / int(hz) / max(n, 1)
print("\t".join([case, target, rnd, f"{req_s:.0f}", str(pct(0.5)), str(pct(0.99)), f"{cpu:.1f}", rss,
                 str(errors), str(cancelled)]))
PY
}

say "rounds: ${ROUNDS} × ${DURATION}s, ${CONNS} connections, spans: $SPANS, encodings: $ENCODINGS, tokens: $TOKENS"
[ "$GRPC" = 1 ] && say "gRPC: ${GRPC_CONNS} connections × ${GRPC_STREAMS} streams, one token"
# Each round runs every target of a batch size back to back, HTTP then gRPC.
for spans in $SPANS; do
  for r in $(seq 1 "$ROUNDS"); do
    for enc in $ENCODINGS; do
      if [ "$enc" = json ]; then body="$work/traces-$spans.json"; type=application/json
      else body="$work/traces-$spans.pb"; type=application/x-protobuf; fi
      for tok in $TOKENS; do
        case_name="$spans spans, $enc, $tok token$([ "$tok" = 1 ] || echo s)"
        # The sink and nginx ignore tokens: measure them once per round (with the 1-token case).
        if [ "$tok" = "${token_list[0]}" ]; then
          run_one "$spans|$enc" direct "$sink_port" "$sink_master" "$body" "$type" "" "$r"
          run_one "$spans|$enc" nginx "$nginx_port" "$nginx_master" "$body" "$type" "" "$r"
          if [ "$FLOOR" = 1 ]; then
            run_one "$spans|$enc" "bare hyper" "$floor_port" "$floor_pid" "$body" "$type" "" "$r"
          fi
        fi
        run_one "$spans|$enc" "spangate ($tok token$([ "$tok" = 1 ] || echo s))" "$sg_port" "$sg_pid" \
          "$body" "$type" "$work/tokens-$tok.txt" "$r"
        say "done: $case_name, round $r"
      done
    done
    if [ "$GRPC" = 1 ]; then
      body="$work/traces-$spans.grpc"
      run_grpc_one "$spans|grpc" direct "$gsink_port" "$sink_master" "$body" "$r"
      run_grpc_one "$spans|grpc" "nginx grpc_pass" "$gnginx_port" "$nginx_master" "$body" "$r"
      run_grpc_one "$spans|grpc" "spangate gRPC→gRPC" "$sg_gg_port" "$sg_gg_pid" "$body" "$r" "$work/audit-gg.log"
      run_grpc_one "$spans|grpc" "spangate gRPC→HTTP" "$sg_gh_port" "$sg_gh_pid" "$body" "$r" "$work/audit-gh.log"
      say "done: $spans spans, gRPC, round $r"
    fi
  done
done

# --- latency at half of spangate's maximum rate -------------------------------
# One run per target per batch size (first encoding, one token), at a fixed
# rate spread over CONNS kept-alive HTTP/1.1 connections (h2load --rps is per
# connection), the connections' schedules staggered. p50/p99 from h2load's
# per-request log.
latency="$work/latency.tsv"
printf 'case\ttarget\trate\treq_s\tp50_us\tp99_us\terrors\n' > "$latency"
run_rate_one() { # case target port body type rate
  local log="$work/h2load-rate.log" out per_conn
  rm -f "$log"
  per_conn=$(python3 -c "import sys; print(max(1, round(float(sys.argv[1]) / int(sys.argv[2]))))" "$6" "$CONNS")
  # The connections open 1 ms apart so their sending schedules are spread
  # over the interval between two requests of one connection, not 32
  # requests at the same instant (a burst that measures queueing, not the
  # proxy). -r excludes -D: the run is -n requests, DURATION seconds long.
  out=$($pin_load h2load --h1 -n "$((per_conn * CONNS * DURATION))" -c "$CONNS" -r 1 --rate-period=1ms \
    --rps="$per_conn" -d "$4" \
    -H "content-type: $5" -H "authorization: Bearer $(head -n1 "$work/tokens.txt")" \
    --log-file="$log" "http://127.0.0.1:$3/v1/traces")
  python3 - "$1" "$2" "$((per_conn * CONNS))" "$log" "$out" >> "$latency" <<'PY'
import re, sys
case, target, rate, log, out = sys.argv[1:]
m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
r = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
if not m or not r:
    sys.exit(f"h2load gave no summary for {target}:\n{out}")
errors = sum(int(r.group(i)) for i in (2, 3, 4))
lat = sorted(int(line.split("\t")[2]) for line in open(log) if line.strip())
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
print("\t".join([case, target, rate, f"{float(m.group(1)):.0f}", str(pct(0.5)), str(pct(0.99)), str(errors)]))
PY
}
if [ "$LATENCY" = 1 ]; then
  read -r -a enc_list <<<"$ENCODINGS"; enc=${enc_list[0]}
  if [ "$enc" = json ]; then type=application/json; ext=json; else type=application/x-protobuf; ext=pb; fi
  for spans in $SPANS; do
    max=$(python3 - "$results" "$spans|$enc" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t")
        if r["case"] == sys.argv[2] and r["target"] == "spangate (1 token)"]
print(statistics.median(float(r["req_s"]) for r in rows) if rows else 0)
PY
)
    [ "${max%.*}" -gt 0 ] || continue
    rate=$(python3 -c "import sys; print(float(sys.argv[1]) / 2)" "$max")
    targets=("direct $sink_port" "nginx $nginx_port")
    [ "$FLOOR" = 1 ] && targets+=("bare-hyper $floor_port")
    targets+=("spangate $sg_port")
    for t in "${targets[@]}"; do
      read -r target port <<<"$t"
      run_rate_one "$spans|$enc" "${target//-/ }" "$port" "$work/traces-$spans.$ext" "$type" "$rate"
    done
    say "done: latency at half rate, $spans spans, $enc"
  done
fi

python3 "$here/report.py" "$results" "$pinned" "$DURATION" "$ROUNDS" "$CONNS" "$(nproc)" "$idle_rss" \
  "$([ "$GRPC" = 1 ] && echo "$GRPC_CONNS×$GRPC_STREAMS")" "$latency"
