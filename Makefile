# miakit: every target sets up what it needs (venv, pinned CPU torch, the package) on first use.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.miakit-installed

.PHONY: venv test test-fast book notebooks bench clean fashion-mnist chromium colab-check gpu-check

venv: $(STAMP)

# PyTorch's CPU index: PyPI's default Linux torch wheel is the CUDA build (several GB)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=10)" 2>/dev/null; then \
	  echo "torch==2.13.0 from PyTorch's CPU index ($(TORCH_INDEX))"; \
	  $(PY) -m pip install -q torch==2.13.0 --index-url $(TORCH_INDEX); \
	else \
	  echo "note: PyTorch's CPU index ($(TORCH_INDEX)) is not reachable: torch==2.13.0 comes from pip's own"; \
	  echo "      configuration (a CPU build where it offers one; on a stock machine PyPI's CUDA wheel, several GB)"; \
	  $(PY) -m pip install -q torch==2.13.0; \
	fi
	@$(PY) -c "import torch; print('installed torch', torch.__version__, '(CPU build)' if torch.version.cuda is None else '(CUDA build ' + torch.version.cuda + ')')"
	$(PY) -m pip install -q -e ".[book,test]"
	touch $(STAMP)

## make test: the whole test suite (unit tests, papermill smoke runs, strict book build, the pages in a browser)
test: $(STAMP) fashion-mnist chromium
	$(PY) -m pytest -q tests

## make test-fast: the inner loop (under 3 minutes here): every test but the notebooks, the book build,
## the browser and the tests that train several targets (marked slow, book or heavy); `make test`
## stays the full suite CI runs
test-fast: $(STAMP) fashion-mnist
	$(PY) -m pytest -q -m "not slow and not book and not heavy" tests

# Debian's Fashion-MNIST, so that its real loader is tested (installed when missing and we may)
fashion-mnist:
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null; \
	  else echo "note: dataset-fashion-mnist not installed (needs root); its real-data test will be skipped"; fi; \
	fi

# Debian's Chromium, for the browser test of the rendered book (Playwright drives it; installed when
# missing and we may; under CI the test fails without it)
chromium:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
	  else echo "note: chromium not installed (needs root); the browser test will be skipped"; fi; \
	fi

## make book [PROFILE=cpu|smoke|paper]: execute every notebook and build the HTML book
# WORKERS: processes that train the targets while the notebooks run, one thread each (benchmarks/threads.py:
# the fastest on a CPU alone and beside other work); at most max(WORKERS, SIDE) jobs at a time;
# WORKERS=0 trains them inside the notebooks
# SIDE: notebooks executed at a time, one thread each (two single-threaded kernels score ~1.24x the
# images of one with two threads here, benchmarks/threads.py --work score); SIDE=1: one after another
# (on a GPU they always do)
WORKERS ?= 2
SIDE ?= 2
book: $(STAMP) fashion-mnist  # the cpu profile's benchmark regime (chapter 06) trains on Fashion-MNIST
	$(PY) -m miakit.book --profile $(PROFILE) --workers $(WORKERS) --side-by-side $(SIDE)

## make notebooks: stamp the repository URL (_config.yml) into the Colab cells, regenerate the outputs-free .ipynb twins
notebooks: $(STAMP)
	$(PY) -m miakit.book.colab_cell
	$(VENV)/bin/jupytext --update --to ipynb notebooks/[0-9][0-9]_*.py

## make bench: speed benchmarks (ratios measured side by side)
bench: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/loss_attack.py
	PYTHONPATH=. $(PY) benchmarks/likelihood.py
	PYTHONPATH=. $(PY) benchmarks/dp_step.py
	PYTHONPATH=. $(PY) benchmarks/cpu_profile.py

## make colab-check: the Colab route simulated here (scripts/simulate_colab.py; a few minutes, needs PyPI)
colab-check: $(STAMP)
	$(PY) scripts/simulate_colab.py

## make gpu-check: the smoke book on CUDA, and step / attack-batch times of the gpu and paper profiles (needs a GPU)
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py

clean:
	rm -rf _staging _build
