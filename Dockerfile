# CPU image: dalistream installed from its wheel (ONNX Runtime), the demo's model and sample clip,
# and GStreamer's RTSP server for `demo`/`bench`. Needs BuildKit. See README.md, "Docker":
#
#   scripts/docker-build.sh                    # makes the base (scripts/docker-base.sh), then builds `dalistream`
#   docker run --rm dalistream demo --cameras 4 --duration 25
#   docker run --rm -v "$PWD/site.toml:/app/site.toml:ro" -v "$PWD/out:/app/out" -p 8080:8080 dalistream
#
# Any Debian 12 / Ubuntu 24.04 image with Python >= 3.11 serves as the base, e.g.
# --build-arg BASE_IMAGE=debian:bookworm-slim where a registry is reachable.
ARG BASE_IMAGE=dalistream-base:bookworm

FROM ${BASE_IMAGE} AS system
RUN --mount=type=bind,source=scripts/docker-install.sh,target=/tmp/install.sh \
    sh /tmp/install.sh system

# Layers from here on change only with what they read: pyproject.toml, then the modules that
# make the model and clip, then the source.
FROM system AS deps
RUN --mount=type=bind,source=scripts/docker-install.sh,target=/tmp/install.sh \
    --mount=type=bind,source=pyproject.toml,target=/tmp/pyproject.toml \
    --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    sh /tmp/install.sh deps /tmp/pyproject.toml

FROM deps AS assets
ENV DALISTREAM_CACHE=/opt/dalistream/cache
WORKDIR /tmp/assets
COPY dalistream/__init__.py dalistream/cache.py dalistream/
COPY dalistream/tools/__init__.py dalistream/tools/assets.py dalistream/tools/provision.py dalistream/tools/sample.py dalistream/tools/
RUN --mount=type=bind,source=scripts/docker-install.sh,target=/tmp/install.sh \
    --mount=type=bind,source=pyproject.toml,target=/tmp/pyproject.toml \
    --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    sh /tmp/install.sh assets /tmp/pyproject.toml

FROM deps
# /app, the user's home and working directory, is laid out as a checkout: engines/ (the model), media/
# (the clip), and what the user writes (out/, bench's costs.json). So a site.toml mounted at
# /app/site.toml finds the model and its output directory at their default relative paths.
COPY --from=assets --chown=10001:10001 /opt/dalistream/cache /app
RUN --mount=type=bind,target=/tmp/source,rw \
    --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    sh /tmp/source/scripts/docker-install.sh app /tmp/source
COPY scripts/docker-entrypoint.sh /usr/local/bin/dalistream-entrypoint
ENV DALISTREAM_CACHE=/app PATH=/opt/dalistream/venv/bin:$PATH PYTHONUNBUFFERED=1
USER dalistream
WORKDIR /app
# The HTTP server ([http] listen = "0.0.0.0:8080" in the site config): metrics, health, camera API, status page.
EXPOSE 8080
ENTRYPOINT ["tini", "--", "dalistream-entrypoint"]
CMD ["--config", "/app/site.toml"]
