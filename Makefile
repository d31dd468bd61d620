# Two commands do everything on a fresh machine: `make app` and `make test`; `make lab` opens the notebooks;
# `make serve` shares the app with other people (docs/deploy.md).
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
PORT     ?= 8866
LAB_PORT ?= 8888
STAMP    := $(VENV)/.installed-stamp

.PHONY: setup app serve lab test lint browser notebook-filter clean-venv

setup: $(STAMP)
	@$(MAKE) --no-print-directory notebook-filter

# Notebook outputs never reach a commit: inside a git checkout, git strips them as it stages a notebook
# (nbstripout's clean filter; `.gitattributes` routes *.ipynb through it). --keep-id keeps the cells' ids,
# so a committed notebook reads back byte for byte. Set once; nothing happens outside a git checkout, and a venv
# made before nbstripout was a dev tool gets a line saying how to have it, not a failed `make app`.
notebook-filter:
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 0; \
	git config filter.nbstripout.clean >/dev/null && exit 0; \
	if [ ! -x $(BIN)/nbstripout ]; then \
	  echo "nbstripout is not in $(BIN): git will not strip notebook outputs (make clean-venv setup installs it)"; \
	  exit 0; fi; \
	$(BIN)/nbstripout --install --attributes .gitattributes && \
	git config filter.nbstripout.clean '"$(abspath $(BIN))/python" -m nbstripout --keep-id' && \
	echo "git now strips notebook outputs when staging (nbstripout)"

# The install recipe lives in tools/install.sh (torch pinned first, then the package, then the wheels that go in
# with --no-deps, each step explained there): the Dockerfile and Binder's postBuild run the same script.
$(STAMP): pyproject.toml constraints.txt Makefile tools/install.sh
	PYTHON=$(PYTHON) tools/install.sh $(VENV)
	touch $@

# Serve the Voilà app on the shipped export.pkl, for this machine only.
app: setup
	$(BIN)/voila app.ipynb --port=$(PORT) --Voila.ip=127.0.0.1 --no-browser

# The same app for other people (docs/deploy.md): every interface by default, BASE_URL for a reverse proxy that
# passes a path prefix through (make serve BASE_URL=/mask/ serves http://HOST:PORT/mask/). voila.json applies as
# for `make app`: no tracebacks, the kernel bound, culling, the preheated pool. exec: Ctrl-C or a SIGTERM to this
# process reaches Voilà, which shuts its kernels down.
HOST     ?= 0.0.0.0
BASE_URL ?= /
serve: setup
	@base='$(BASE_URL)'; base="/$${base#/}"; base="$${base%/}/"; \
	echo "Serving the Selfie Mask Detector on http://$(HOST):$(PORT)$$base (stop it with Ctrl-C, or kill $$$$)"; \
	exec $(BIN)/voila app.ipynb --port=$(PORT) --Voila.ip=$(HOST) --Voila.base_url="$$base" --no-browser

# JupyterLab on this venv's kernel, for the notebooks: open the printed http://127.0.0.1:8888/lab?token=... link
# (make lab LAB_PORT=9999 for another port). As root (containers, CI machines) Jupyter wants --allow-root.
lab: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# Debian's chromium for the browser tests (never `playwright install`, which downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: browser tests will be skipped (apt-get install chromium)"; fi; }

test: setup browser
	$(BIN)/python -m pytest -q -ra --durations=20

lint: setup
	$(BIN)/ruff check selfiemask scrape tests benchmarks

# The notebook filter runs this venv's python: without it git would refuse to stage notebooks.
clean-venv:
	-git config --remove-section filter.nbstripout 2>/dev/null
	-git config --remove-section diff.ipynb 2>/dev/null
	rm -rf $(VENV)
