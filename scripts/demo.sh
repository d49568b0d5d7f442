#!/usr/bin/env bash
# `make demo`: train the default model, export it to the model store, start the service,
# classify two real validation films over HTTP, print a curl example, and keep serving until Ctrl-C.
# The default model is trained from training/configs/default.yaml: pediatric (Kermany) and adult
# (COVID-19 Radiography Database) films from ../shared/data, positive = pneumonia of any cause.
#   CXR_CONFIG=<training YAML>                  (default: training/configs/default.yaml)
#   CXR_DATA=<root with one folder per class>   train on this one folder instead of the config's sources
#   TRAIN_ARGS="--finetune-epochs 1 ..."         extra flags for `python -m training run`
#   DEMO_SERVE=0                                 stop after the example instead of serving
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
CONFIG="${CXR_CONFIG:-training/configs/default.yaml}"
DEFAULT_SOURCES=(../shared/data/kermany224/train ../shared/data/covid19-radiography224)
DATA_ARGS=(--config "$CONFIG")
if [[ -n "${CXR_DATA:-}" ]]; then
  DATA_ARGS+=(--data "$CXR_DATA")
elif [[ "$CONFIG" == training/configs/default.yaml ]]; then
  for source in "${DEFAULT_SOURCES[@]}"; do
    if [[ ! -d "$source" ]]; then
      cat >&2 <<MSG
No training data found at $source. The default model is trained on two public datasets:
  - Kermany et al. 2018 (Cell 172(5); Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0), the
    pediatric training split, as ../shared/data/kermany224/train/{NORMAL,PNEUMONIA}
  - the COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021), adult films, as
    ../shared/data/covid19-radiography224/{COVID,Normal}
or set CXR_DATA to one folder laid out as <root>/<CLASS>/*.{png,jpg,jpeg,dcm}.
MSG
      exit 2
    fi
  done
fi

NAME=cxr-pneumonia
VERSION=$(date -u +%Y%m%dT%H%M%SZ)
PORT="${CXR_PORT:-8000}"
RUN_DIR="runs/${VERSION}-default"
echo "== training the default model (${DATA_ARGS[*]}; about 15 minutes on 2 idle CPU cores)"
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of flags
"$BIN/python" -m training run "${DATA_ARGS[@]}" --output-dir runs --run-name "${VERSION}-default" \
  --store models --name "$NAME" --version "$VERSION" ${TRAIN_ARGS:-}

# The service requires an API key (CXR_AUTH=required is the default): mint one for this demo into
# files only this user can read - the key file, as a mounted Kubernetes Secret would provide it, and
# a header file for curl, so the key never shows in a process list.
KEYS_FILE="$RUN_DIR/api_keys"
HEADER_FILE="$RUN_DIR/auth_header"
API_KEY=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))')
(umask 077 && printf 'demo:%s:predict,metrics\n' "$API_KEY" > "$KEYS_FILE" \
  && printf 'Authorization: Bearer %s\n' "$API_KEY" > "$HEADER_FILE")
unset API_KEY

echo "== starting the service on 127.0.0.1:$PORT with models/$NAME/$VERSION"
env -u CXR_DATA CXR_MODEL_STORE=models CXR_MODEL_NAME="$NAME" CXR_MODEL_VERSION="$VERSION" \
  CXR_API_KEYS_FILE="$KEYS_FILE" CXR_PORT="$PORT" "$BIN/python" -m service > "$RUN_DIR/service.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$RUN_DIR/service.log" >&2; exit 1; fi
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null

# One validation film of each class: films the model never trained on.
mapfile -t SAMPLES < <("$BIN/python" - "$RUN_DIR/split.csv" <<'PY'
import csv, sys
seen = {}
for row in csv.DictReader(open(sys.argv[1])):
    if row["split"] == "validation":
        seen.setdefault(row["label"], row["path"])
print("\n".join(seen[label] for label in sorted(seen)))
PY
)
for film in "${SAMPLES[@]}"; do
  echo "== POST $film"
  curl -sf -H "@$HEADER_FILE" -F "file=@$film" "http://127.0.0.1:$PORT/v1/predict?overlay=false" \
    | "$BIN/python" -m json.tool
done
curl -sf -H "@$HEADER_FILE" -F "file=@${SAMPLES[0]}" "http://127.0.0.1:$PORT/v1/predict" \
  | "$BIN/python" -c 'import base64,json,sys; r=json.load(sys.stdin); open(sys.argv[1],"wb").write(base64.b64decode(r["gradcam"]["png_base64"]))' \
    "$RUN_DIR/gradcam_example.png"
echo "== Grad-CAM overlay of the first film saved to $RUN_DIR/gradcam_example.png"
cat <<MSG

The service is up. Classify any PNG, JPEG or DICOM chest film with (API key: $KEYS_FILE):
  curl -H @$HEADER_FILE -F "file=@${SAMPLES[0]}" "http://127.0.0.1:$PORT/v1/predict?overlay=false"
Also: /v1/models  /metrics  /docs (with the key)  /healthz  /readyz     (service log: $RUN_DIR/service.log)
MSG
if [[ "${DEMO_SERVE:-1}" == "0" ]]; then exit 0; fi
echo "Serving until Ctrl-C."
wait "$SERVER"
