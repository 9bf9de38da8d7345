#!/bin/sh
# Container entrypoint, run by tini (PID 1: forwards SIGTERM/SIGINT, reaps the RTSP server `demo`
# starts). Its arguments go to `python -m dalistream`; without any, the image's CMD runs the
# service on /app/site.toml (mount yours there). Examples:
#   docker run --rm dalistream demo --cameras 4 --duration 25
#   docker run --rm -v "$PWD/site.toml:/app/site.toml:ro" dalistream check /app/site.toml
# /app ($DALISTREAM_CACHE, the working directory) holds engines/ (the model) and media/ (the
# sample clip), so a site.toml there finds the model and out/ at their default relative paths.
set -eu
exec python -m dalistream "$@"
