# earmark: `make serve` sets up and starts the web page + API; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 7860
MODEL ?=
TORCH_VERSION := 2.13.0
DEBIAN_PACKAGES := ffmpeg sox chromium mosquitto fonts-noto-cjk libchromaprint-tools

.PHONY: setup sysdeps serve test check lint bench tiny-model clean fuzz fuzz-ci image image-test

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: here it is a CPU build on local disk; an unpinned torch pulls a CUDA build
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	# pip >= 25.1 reads [dependency-groups] (--group): the dev tools are not an extra
	$(PY) -m pip install -q --upgrade 'pip>=25.1'
	$(PY) -m pip install -q -e '.[all]' --group dev
	touch $@

setup: $(VENV)/.installed

# Debian packages the tests use for real: ffmpeg/sox (encoded fixtures), chromium (browser tests), mosquitto (MQTT).
sysdeps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# prints the page's URL once listening; without the real weights: make serve MODEL=tests/assets/tiny-clap
serve: setup
	$(VENV)/bin/earmark model prepare --if-needed $(MODEL)
	$(VENV)/bin/earmark serve --port $(PORT) $(if $(MODEL),--model $(MODEL),)

tests/assets/tiny-clap/model.safetensors:
	$(PY) scripts/make_tiny_clap.py

tiny-model: setup tests/assets/tiny-clap/model.safetensors

# the whole suite, the container image included where podman can be installed (tests/test_image.py says why
# when it skips; a first build takes ~15 minutes on 2 cores, later ones reuse its layers); what CI runs after lint.
# TEST_WORKERS pytest-xdist workers, one test file each (module fixtures stay shared): much of the suite waits on
# servers, browsers and subprocesses, so two workers on two cores took 8.5 instead of 14.6 minutes
TEST_WORKERS ?= 2
test: setup sysdeps tiny-model
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# style and types: CI fails on any of these
lint: setup
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy src

# while developing: lint + the fast lane (no browser, no kill loops, no Ray, no subprocess servers, no image)
FAST := not slow and not browser and not kill and not ray and not server and not image
check: lint sysdeps tiny-model
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "$(FAST)"

# fuzzing (tests/fuzz): the decode entry point and the request parsers, for FUZZ_SECONDS in all;
# fails on a crash, a hang (one input over 20 s) or an exception of an unexpected type
FUZZ_SECONDS ?= 600
fuzz: setup sysdeps
	EARMARK_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -p no:cacheprovider --timeout $$(( $(FUZZ_SECONDS) + 600 )) tests/fuzz
fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=60

# the container image (docs/deploy.md): rootful podman on Debian, base image made locally (no registry needed;
# scripts/podman_setup.sh), or ENGINE=docker with the Dockerfile's default base. IMAGE_ARGS: more build options,
# e.g. IMAGE_ARGS="--build-arg MODEL_DIR=docker/model"
ENGINE ?= podman
IMAGE ?= localhost/earmark:latest
image:
	@SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -E"); \
	given=$${BASE_IMAGE:-}; if [ "$(ENGINE)" = podman ]; then eval "$$($$SUDO scripts/podman_setup.sh)"; fi; \
	BASE_IMAGE=$${given:-$${BASE_IMAGE:-}}; \
	$$SUDO env ENGINE=$(ENGINE) IMAGE=$(IMAGE) $${CONTAINERS_CONF:+CONTAINERS_CONF=$$CONTAINERS_CONF} \
	  $${BASE_IMAGE:+BASE_IMAGE=$$BASE_IMAGE} scripts/build_image.sh $(IMAGE_ARGS)

# builds the test image (localhost/earmark:test, the tiny model baked in; reused while its inputs are unchanged)
# and smoke-tests it for real: tests/test_image.py
image-test: setup sysdeps tiny-model
	$(PY) -m pytest -q -m image tests/test_image.py

bench: setup
	$(PY) bench/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info
