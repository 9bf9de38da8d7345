#!/bin/sh
# The build steps Dockerfile (CPU) and Dockerfile.gpu share, one per stage; run inside `docker build`.
#
#   system           Debian/Ubuntu packages (python3 + venv; GStreamer's RTSP server for demo and
#                    bench; tini as PID 1) and the user the image runs as
#   deps PYPROJECT [EXTRA...]
#                    /opt/dalistream/venv with PYPROJECT's dependencies (and those extras'), not
#                    dalistream itself, so this big layer outlives source changes
#   assets PYPROJECT the demo's model and sample clip into $DALISTREAM_CACHE, made by the package's
#                    own commands (dalistream/tools/{assets,provision,sample}.py in the working directory)
#   app SOURCE       the dalistream wheel built from SOURCE, installed without dependencies
#
# When the BuildKit secret "ca" (a PEM bundle) is given, pip trusts it: a TLS-intercepting proxy
# between the build and PyPI. The bundle is only ever in the secret's mount, never in a layer.
set -eu
VENV=/opt/dalistream/venv
[ ! -s /run/secrets/ca ] || export PIP_CERT=/run/secrets/ca
export PIP_DISABLE_PIP_VERSION_CHECK=1

# requirements PYPROJECT [EXTRA...]: pip installs PYPROJECT's dependencies and those extras'.
requirements() {
    "$VENV/bin/python" - "$@" > /tmp/requirements.txt <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + [r for extra in sys.argv[2:] for r in project["optional-dependencies"][extra]]))
PY
    "$VENV/bin/pip" install -r /tmp/requirements.txt
    rm /tmp/requirements.txt
}

case "${1:-}" in
system)
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv tini \
        python3-gi gir1.2-gst-rtsp-server-1.0 \
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    rm -rf /var/lib/apt/lists/*
    useradd --uid 10001 --create-home --home-dir /app --shell /usr/sbin/nologin dalistream
    ;;
deps)
    shift
    python3 -m venv "$VENV"
    requirements "$@"
    ;;
assets)
    requirements "$2" media
    "$VENV/bin/python" -m dalistream.tools.provision
    "$VENV/bin/python" -m dalistream.tools.sample
    ;;
app)
    "$VENV/bin/pip" wheel --no-deps --wheel-dir /tmp/wheel "$2"
    "$VENV/bin/pip" install --no-deps /tmp/wheel/dalistream-*.whl
    rm -rf /tmp/wheel
    ;;
*)
    echo "usage: $0 system | deps PYPROJECT [EXTRA...] | assets PYPROJECT | app SOURCE" >&2
    exit 2
    ;;
esac
