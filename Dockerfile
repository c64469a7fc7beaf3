# earmark's container image: `earmark serve` (web page + REST API on port 7860), and `earmark monitor`.
#
#   make image                      # = scripts/build_image.sh: podman or docker, CPU torch
#   docker build -t earmark .       # the same with plain docker and a registry
#
# Build arguments (see docs/deploy.md):
#   BASE_IMAGE       a Debian-based image; with no Python in it, Debian's python3 is installed
#                    (scripts/podman_setup.sh makes localhost/debian:bookworm on a machine without a registry)
#   TORCH_VERSION    pinned like the Makefile's TORCH_VERSION
#   TORCH_INDEX_URL  where torch comes from: the CPU build by default; .../whl/cu128 for CUDA;
#                    empty: the ordinary pip index and PIP_FIND_LINKS (e.g. a local CPU wheel)
#   EXTRAS           earmark's extras (server,ui,monitor)
#   MODEL_DIR        a model folder inside the build context to bake in (default docker/model, empty
#                    unless you put one there); it is prepared for this CPU at build time
#   PIP_CERT, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS
#                    pip's own settings, used while building only (a CA bundle mounted into the build,
#                    a local index): nothing of them stays in the image
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# -- Python: the official python images have it; a plain Debian base gets Debian's python3 -------------
FROM ${BASE_IMAGE} AS python
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv \
            >/dev/null \
        && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*; \
    fi \
    && python3 -c "import sys; assert sys.version_info >= (3, 11), 'earmark image needs Python 3.11+ in BASE_IMAGE'"

# -- build: a virtual environment in /opt/venv --------------------------------------------------------
FROM python AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=server,ui,monitor
ARG PIP_CERT=
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120
# docker/pip.sh: pip with only the PIP_* build arguments that were given (an empty one would mean "")
COPY docker/pip.sh /usr/local/bin/earmark-build-pip
RUN python3 -m venv /opt/venv \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
        earmark-build-pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"; \
    else \
        earmark-build-pip install "torch==$TORCH_VERSION"; \
    fi
# the dependencies first (a layer that survives source changes), then earmark itself
COPY pyproject.toml README.md docker/requirements.py /src/
RUN /opt/venv/bin/python /src/requirements.py /src/pyproject.toml "$EXTRAS" >/tmp/requirements.txt \
    && earmark-build-pip install -r /tmp/requirements.txt
COPY src /src/src
# then drop what the image never uses: torch's C++ headers, cmake files and test programs, scipy's
# test suites, and the compiled .pyc files (a third of the size: Python writes them on first use to
# PYTHONPYCACHEPREFIX in the EARMARK_HOME volume instead)
RUN earmark-build-pip install --no-deps /src \
    && /opt/venv/bin/earmark --help >/dev/null \
    && cd /opt/venv/lib/python3*/site-packages \
    && rm -rf torch/include torch/share/cmake torch/test caffe2 \
    && find torch/bin -type f ! -name torch_shm_manager -delete \
    && find . -depth -type d \( -name tests -o -name test \) -path '*/scipy/*' -exec rm -rf {} + \
    && find /opt/venv -depth -type d -name __pycache__ -exec rm -rf {} +

# -- runtime ------------------------------------------------------------------------------------------
FROM python AS runtime
RUN groupadd --gid 10001 earmark \
    && useradd --uid 10001 --gid earmark --home-dir /home/earmark --create-home \
        --shell /usr/sbin/nologin earmark \
    && mkdir -p /var/lib/earmark /data /opt/earmark \
    && chown earmark:earmark /var/lib/earmark /data
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh docker/healthcheck.py /usr/local/lib/earmark/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EARMARK_HOME=/var/lib/earmark \
    EARMARK_DB=/data/earmark.db \
    EARMARK_PORT=7860 \
    PYTHONPYCACHEPREFIX=/var/lib/earmark/pycache \
    EARMARK_WAIT_FOR_MODEL=1 \
    HF_HUB_DISABLE_TELEMETRY=1

# a model baked in (optional): put a model folder's files in docker/model/ (or pass MODEL_DIR); it is
# then the default model, and `earmark model prepare` exports it to ONNX and picks the backend for the
# building CPU once (kept in EARMARK_HOME), so the first start is fast. Without a model the server
# starts anyway (EARMARK_WAIT_FOR_MODEL=1): /readyz answers 503 and says what is missing.
ARG MODEL_DIR=docker/model
COPY ${MODEL_DIR}/ /opt/earmark/model/
RUN if [ -f /opt/earmark/model/config.json ]; then \
        HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 earmark model prepare /opt/earmark/model; \
    else \
        rm -rf /opt/earmark/model; \
    fi \
    && chown -R earmark:earmark /var/lib/earmark

USER earmark
WORKDIR /home/earmark
EXPOSE 7860
# the model cache and prepared models; the library database, monitor events and clips
VOLUME ["/var/lib/earmark", "/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python3", "/usr/local/lib/earmark/healthcheck.py"]
ENTRYPOINT ["/usr/local/lib/earmark/entrypoint.sh"]
# anything but loopback needs an API key: EARMARK_API_KEY, or a secret file (EARMARK_API_KEY_FILE,
# default /run/secrets/earmark_api_key); without one the server refuses to start and says so
CMD ["earmark", "serve", "--host", "0.0.0.0"]
