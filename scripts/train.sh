#!/usr/bin/env bash
# `make train`: train the default recipe, export it into the local model store (models/, git-ignored
# except the released version) and publish it there: models/cxr-pneumonia/ACTIVE moves to it only if
# it measures at least as well as the active version. A thin wrapper over `python -m training run`.
#   bash scripts/train.sh [CONFIG]        default training/configs/default.yaml
#   TRAIN_ARGS="--finetune-epochs 1"      extra flags for `python -m training run` (override the config)
# Releasing the result into git is a separate, deliberate step: make release (docs/release.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
CONFIG="${1:-training/configs/default.yaml}"
NAME=cxr-pneumonia
VERSION=$(date -u +%Y%m%dT%H%M%SZ)
echo "== training $CONFIG into runs/${VERSION}-default, exporting models/$NAME/$VERSION"
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of flags
"$BIN/python" -m training run --config "$CONFIG" --output-dir runs --run-name "${VERSION}-default" \
  --store models --name "$NAME" --version "$VERSION" ${TRAIN_ARGS:-}
STATUS=0
"$BIN/python" -m training publish --store models --name "$NAME" --version "$VERSION" || STATUS=$?
cat <<MSG

Serve it:    CXR_MODEL_STORE=models CXR_MODEL_VERSION=$VERSION .venv/bin/python -m service   (or =active)
Release it:  make release MODEL=models/$NAME/$VERSION PROVENANCE=<provenance.json>   (docs/release.md)
MSG
exit "$STATUS"
