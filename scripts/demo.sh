#!/usr/bin/env bash
# `make demo`: serve the released model (models/cxr-pneumonia/RELEASED, committed in git) and classify
# the sample films in samples/ over HTTP: probabilities, triage level, Grad-CAM overlay saved, and the
# non-chest image refused. No training and no data download (training is `make train`).
#   DEMO_SERVE=0        stop after the examples instead of serving until Ctrl-C
#   CXR_PORT=8000       port on 127.0.0.1
#   DEMO_OUT=runs/demo  where the API key, overlays and service log go
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
NAME=cxr-pneumonia
STORE=models
PORT="${CXR_PORT:-8000}"
OUT="${DEMO_OUT:-runs/demo}"
if [[ ! -f "$STORE/$NAME/RELEASED" ]]; then
  echo "No released model: $STORE/$NAME/RELEASED is missing (docs/release.md)." >&2
  exit 2
fi
VERSION=$(<"$STORE/$NAME/RELEASED")
mkdir -p "$OUT"
# GET <url> answers 2xx: Python's urllib, so the demo needs nothing beyond the serving environment.
answers() { "$BIN/python" -c 'import sys, urllib.request as r; r.urlopen(sys.argv[1], timeout=5)' "$1" 2>/dev/null; }
# Something else listening on the port would be mistaken for our service below: refuse instead.
if "$BIN/python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)' \
  "$PORT" 2>/dev/null; then
  echo "Port $PORT on 127.0.0.1 is already in use: choose another with CXR_PORT=<port> make demo" >&2
  exit 2
fi

# The service requires an API key (CXR_AUTH=required is the default): mint one for this demo into
# files only this user can read - the key file, as a mounted Kubernetes Secret would provide it, and
# a header file for curl, so the key never shows in a process list.
KEYS_FILE="$OUT/api_keys"
HEADER_FILE="$OUT/auth_header"
API_KEY=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))')
(umask 077 && printf 'demo:%s:predict,metrics\n' "$API_KEY" > "$KEYS_FILE" \
  && printf 'Authorization: Bearer %s\n' "$API_KEY" > "$HEADER_FILE")
unset API_KEY

echo "== starting the service on 127.0.0.1:$PORT with the released model $STORE/$NAME/$VERSION"
env -u CXR_MODEL_DIR CXR_MODEL_STORE="$STORE" CXR_MODEL_NAME="$NAME" CXR_MODEL_VERSION="$VERSION" \
  CXR_API_KEYS_FILE="$KEYS_FILE" CXR_PORT="$PORT" CXR_HOST=127.0.0.1 \
  "$BIN/python" -m service > "$OUT/service.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  if answers "http://127.0.0.1:$PORT/readyz"; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$OUT/service.log" >&2; exit 1; fi
  sleep 0.5
done
if ! answers "http://127.0.0.1:$PORT/readyz"; then
  echo "the service did not become ready in 2 minutes; its log:" >&2
  cat "$OUT/service.log" >&2
  exit 1
fi

echo "== classifying the sample films (samples/README.md says where each comes from)"
STATUS=0
"$BIN/python" -m scripts.demo_client --url "http://127.0.0.1:$PORT" --header-file "$HEADER_FILE" \
  --out "$OUT" || STATUS=$?
cat <<MSG

Classify your own PNG, JPEG or DICOM chest film (API key in $KEYS_FILE):
  curl -H @$HEADER_FILE -F "file=@/path/to/film.dcm" "http://127.0.0.1:$PORT/v1/predict?overlay=false"
Also: /v1/models  /metrics  /docs (with the key)  /healthz  /readyz     (service log: $OUT/service.log)
Train your own model: make train (docs/release.md); the released one: $STORE/$NAME/$VERSION/RELEASE.md
MSG
if [[ "${DEMO_SERVE:-1}" == "0" || "$STATUS" != "0" ]]; then exit "$STATUS"; fi
echo "Serving until Ctrl-C."
wait "$SERVER"
