#!/usr/bin/env bash
# Start spangate (dev IdP + recording upstream from `spangate dev`, and a
# `spangate serve` with the given server settings), run scripts/attack.py
# against it, stop everything.
#   scripts/attack.sh [path/to/spangate] [max_connections] [extra attack.py flags]
set -euo pipefail
BIN=${1:-target/release/spangate}
MAXC=${2:-500}
shift $(( $# > 2 ? 2 : $# )) || true
DIR=$(mktemp -d)
trap 'kill $DEV $SERVE 2>/dev/null || true; rm -rf "$DIR"' EXIT
mkdir "$DIR/policies"
cp policies/endpoints.yaml "$DIR/policies/"
# The demo rate limit is per identity: raise it so the limiter is not what is measured.
sed -E 's/^( *)rate:.*/\1rate: { requests_per_second: 1000000, spans_per_second: 1000000000, burst: 1000 }/' \
  policies/edge.yaml > "$DIR/policies/edge.yaml"
"$BIN" dev --listen 127.0.0.1:19318 --admin-listen 127.0.0.1:19902 \
  --idp-listen 127.0.0.1:19400 --upstream-listen 127.0.0.1:19411 >/dev/null 2>&1 &
DEV=$!
echo dev-lightstep-token > "$DIR/ls-token"
cat > "$DIR/spangate.yaml" <<YAML
server: { listen: 127.0.0.1:14318, max_connections: $MAXC }
admin: { listen: 127.0.0.1:19901 }
providers:
  dev: { issuer: "http://127.0.0.1:19400", audiences: [spangate] }
upstreams:
  lightstep: { url: "http://127.0.0.1:19411/traces/otlp/v0.9" }
secrets:
  bootstrap: { lightstep-prod: { file: ls-token } }
policies: policies
audit: { file: audit.log }
YAML
for _ in $(seq 100); do curl -sf http://127.0.0.1:19400/.well-known/openid-configuration >/dev/null && break; sleep 0.1; done
"$BIN" serve --config "$DIR/spangate.yaml" >"$DIR/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:14318/readyz >/dev/null && break; sleep 0.1; done
python3 scripts/attack.py --target 127.0.0.1:14318 --idp http://127.0.0.1:19400 "$@"
echo "spangate fds at the end: $(ls /proc/$SERVE/fd | wc -l)"
