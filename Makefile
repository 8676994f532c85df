# Two commands do all set-up: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install demo test lint bench clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, pinned: a CPU wheel of 2.13.0 lies on this machine's disk, elsewhere PyPI serves it.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The defaults at a glance: flow matching and MeanFlow on a 2-D toy, then on class-conditional 8x8 digits
# (each demo trains its two runs side by side, one thread each).
demo: $(STAMP)
	$(BIN)/straightflow demo --out runs/demo
	$(BIN)/straightflow demo digits --out runs/demo-digits

# Best effort: the HTML report's browser test (tests/report/test_report_browser.py) needs Debian's chromium and
# chromedriver; where apt-get or root is missing, or the mirror is unreachable, that one test skips and says why.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  command -v apt-get >/dev/null 2>&1 && \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1; } || \
	  echo "note: chromium/chromedriver not installed; the report's browser test will skip"

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python benchmarks/toy2d.py

clean:
	rm -rf $(VENV) runs .pytest_cache
