# Two commands: `make run` and `make test`. Everything else is set up by them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint system-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's Chromium drives the page tests; ffmpeg is the third-party RTP sender in the
# live tests. Installed only when missing (CI runs as root).
system-deps:
	@command -v chromium >/dev/null 2>&1 && command -v ffmpeg >/dev/null 2>&1 || { \
	  (apt-get update -qq || true) && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ffmpeg >/dev/null; }

run: $(STAMP)
	$(BIN)/callpipe serve --demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check pipeline stt tts prompter robot recordings models tests bench
	$(BIN)/ruff format --check pipeline stt tts prompter robot recordings models tests bench
	$(BIN)/mypy pipeline stt tts prompter robot recordings models

clean:
	rm -rf $(VENV) data .pytest_cache
