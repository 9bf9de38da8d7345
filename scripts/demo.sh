#!/usr/bin/env bash
# Set up (idempotent) and run the demo: local RTSP server, bundled clip, N cameras, JSON lines.
# Extra arguments go to `python -m dalistream demo` (default: 4 cameras for 25 s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m dalistream demo "$@"
