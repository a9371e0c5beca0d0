# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make run   - set up .venv and run the seed notebook's one-step variants end to end (seqcast run --one-step)
#   make test  - set up .venv and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
# A loaded 2-core machine can take longer than the default 20 s to start the ephemeral server.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: run test test-fast test-slow test-fuzz lint bench-reproduce bench-speed bench-m3 bench-scale clean

# .venv holds exactly what uv.lock pins (with the test and s3 extras), seqcast itself editable. uv comes from PATH,
# or else pip installs it into .uv/ once: a machine needs only Python and make. --locked refuses a uv.lock that
# no longer matches pyproject.toml (run `$(UV) lock` after changing a dependency), so the tested set is what installs.
UV_VERSION := 0.13.9
UV ?= $(or $(shell command -v uv),.uv/bin/uv)
# uv uses the Python above and never downloads one of its own
export UV_PYTHON_DOWNLOADS := never

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'

$(BIN)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra test --extra s3 --python $(PYTHON)
	touch $@

run: $(BIN)/.installed
	$(BIN)/seqcast run --one-step

# Two pytest-xdist workers shorten the run on 2 cores: most tests wait on a subprocess or the API.
# TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2

# Every tier but slow (unit, integration, e2e; docs/development.md).
test: $(BIN)/.installed
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadgroup

# The unit tier alone, in this process: the core's plain functions.
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -p no:xdist -m unit

# The slow tier, one test after another: several start servers and worker processes of their own.
test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q --durations=15 -p no:xdist -m slow

# The ingest fuzzer with many more examples than the default run (profiles in tests/conftest.py).
test-fuzz: $(BIN)/.installed
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -p no:xdist tests/test_fuzz_ingest.py tests/test_fuzz_params.py

bench-reproduce: $(BIN)/.installed
	$(BIN)/python bench/reproduce.py --skip-existing

bench-speed: $(BIN)/.installed
	$(BIN)/python bench/speed.py --out bench/results/speed.md

# make bench-m3 [SUBSET="monthly quarterly"] [VARIANTS="stats_theta,linear_10"] [WINDOWS=3 [REFIT=1]] [OUT=FILE]:
# space or comma separated; empty means all subsets and every variant that fits an ingested M3 subset; WINDOWS also
# backtests every run to score its intervals, REFIT=1 trains a model per cutoff (docs/benchmarks.md).
SUBSET ?=
VARIANTS ?=
WINDOWS ?=
REFIT ?=
OUT ?= bench/results/m3.md
comma := ,

bench-m3: $(BIN)/.installed
	$(BIN)/python bench/m3.py --out $(OUT) $(foreach s,$(subst $(comma), ,$(SUBSET)),--subset $(s)) \
		$(foreach v,$(subst $(comma), ,$(VARIANTS)),--variant $(v)) \
		$(if $(WINDOWS),--windows $(WINDOWS)) $(if $(REFIT),--refit)

# make bench-scale [SIZES=30k,100k,300k,1M] [SCALE_STEPS=ingest,mlp]: every step of bench/scale.py on panels of
# about that many series, each step its own process beside its peer; appends the table to bench/results/scale.md.
SIZES ?= 30k,100k,300k
SCALE_STEPS ?= ingest,stats_theta,backtest,mlp,nbeats_generic,sql

bench-scale: $(BIN)/.installed
	$(BIN)/python bench/scale.py --sizes $(SIZES) --steps $(SCALE_STEPS) --append

lint: $(BIN)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .uv build *.egg-info .pytest_cache
