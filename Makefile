# Two commands: `make run` and `make test`. Everything else is set up by them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

.PHONY: run test lint system-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# resemblyzer ships the speaker encoder's weights (mono recordings split into agent and
# customer); models/speaker.py runs the encoder in numpy, so its torch is not installed.
# pipecat-ai ships Smart Turn v3.2's ONNX file, which bench/endpointing.py scores; nothing
# of pipecat is imported, so none of its dependencies is installed.
$(STAMP): $(BIN)/python pyproject.toml Makefile
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps 'resemblyzer==0.1.4' 'pipecat-ai==1.14.0'
	touch $(STAMP)

# Debian's Chromium drives the page tests; ffmpeg is the third-party RTP sender in the
# live tests; the Asterisk sound packs (a real French voice and its transcripts, real music
# on hold) and espeak-ng make the evaluation corpus (sim/corpus.py); PostgreSQL is the
# shared database the tests start themselves (tests/conftest.py). Installed only when
# missing (CI runs as root).
DEBS := chromium ffmpeg espeak-ng asterisk-core-sounds-fr-wav asterisk-core-sounds-fr \
	asterisk-moh-opsound-wav postgresql
system-deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  (apt-get update -qq || true) && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(STAMP)
	$(BIN)/callpipe serve --demo

# Two test processes: the suite mostly waits (real-time calls, services starting), about
# 7 min of CPU in 13 min on one; each process starts its own broker, S3 server and database.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check app pipeline stt tts prompter robot recordings models sim tests bench
	$(BIN)/ruff format --check app pipeline stt tts prompter robot recordings models sim tests bench
	$(BIN)/mypy app pipeline stt tts prompter robot recordings models sim tests bench

clean:
	rm -rf $(VENV) data .pytest_cache
