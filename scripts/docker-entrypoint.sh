#!/usr/bin/env bash
# Container entrypoint: arguments go to `python -m dalistream` (e.g. `--config site.toml`, `demo`).
set -euo pipefail
cd /app
exec .venv/bin/python -m dalistream "$@"
