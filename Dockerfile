# CPU image: the whole pipeline on ONNX Runtime, plus the local RTSP server for `demo`/`bench`.
#   docker build -t dalistream .
#   docker run --rm -v "$PWD/site.toml:/etc/dalistream/site.toml:ro" -v "$PWD/out:/app/out" \
#       dalistream --config /etc/dalistream/site.toml
#   docker run --rm dalistream demo --cameras 4 --duration 25
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PYTHON=/usr/local/bin/python3
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dalistream ./dalistream
COPY graphs ./graphs
COPY scripts ./scripts
COPY engines/README.md ./engines/
COPY calib_data ./calib_data
RUN scripts/setup.sh && rm -rf .cache /root/.cache /var/lib/apt/lists/*

ENTRYPOINT ["scripts/docker-entrypoint.sh"]
