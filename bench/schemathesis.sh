#!/usr/bin/env bash
# Property-based conformance of the HTTP API to its own OpenAPI, with a key of each given role:
# no 5xx, and no status the spec does not list (docs/benchmarks.md, issue 16).
#
#   bench/schemathesis.sh [SECONDS_PER_ROLE] [ROLE...]     (defaults: 180 s; admin pbx)
#
# Starts `callpipe serve` on a fresh data folder and a free port, creates one key per role
# for tenant "fuzz", and runs schemathesis' coverage and fuzzing phases against it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
SECONDS_PER_ROLE=${1:-180}
shift || true
ROLES=${*:-admin pbx}
DATA=$(mktemp -d)/data
PORT=$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CALLPIPE_PORT=$PORT CALLPIPE_LOG_LEVEL=WARNING $BIN/callpipe serve --data "$DATA" >"$DATA.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.5
done
status=0
for role in $ROLES; do
  extra=()
  [ "$role" = agent ] && extra=(--agent-id agent-1)
  KEY=$($BIN/callpipe keys create --tenant fuzz --role "$role" "${extra[@]}" --data "$DATA")
  echo "== role $role"
  $BIN/schemathesis run "http://127.0.0.1:$PORT/openapi.json" \
    -H "Authorization: Bearer $KEY" \
    --checks not_a_server_error,status_code_conformance \
    --phases coverage,fuzzing --workers 2 --max-time "$SECONDS_PER_ROLE" || status=1
done
exit $status
