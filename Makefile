# argse: `make demo` runs the whole pipeline on synthetic data; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# TORCH_INDEX=https://download.pytorch.org/whl/cpu: torch and torchvision from that wheel index, installed
# first (CPU-only wheels: no CUDA libraries, no Triton); empty: the default index (CUDA wheels on Linux).
# It takes effect when .venv is built: rm -rf .venv first to switch an existing one.
TORCH_INDEX ?=
CONFIG ?= configs/cifar100_lt.yaml
# EXPERTS=a,b: train these; default: the config's 'experts' (the five built-ins unless it says otherwise).
EXPERTS ?=
ARGS ?=
# SEEDS=0,1,2: make reproduce runs the pipeline once per seed and reports mean ± standard error.
SEEDS ?=
# OUT=docs/results/NAME.md: where make reproduce writes its page (default: outputs/results/NAME.md).
OUT ?=
# PARALLEL=1: train the experts at once, one process per visible GPU; PARALLEL=N: N processes.
PARALLEL ?=
PARALLEL_FLAG = $(if $(filter-out 0,$(PARALLEL)),--parallel $(filter-out 1,$(PARALLEL)))
# TEAM=1: train the experts at once in one process, one thread and CUDA stream each (one GPU).
TEAM ?=
TEAM_FLAG = $(if $(filter 1,$(TEAM)),--team)

# make predict INPUT=image|folder|list.txt [RATE=0.2] [METHOD=plugin_worst]: classify images with the run's team.
INPUT ?=
RATE ?= 0.2
RISK ?=
DELTA ?= 0.05
METHOD ?= plugin_worst

.PHONY: demo experts gating evaluate predict stages reproduce table2 test test-all lint bench clean

# The venv is rebuilt when the dependencies change.
$(VENV)/.stamp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install -q -c constraints.txt --index-url $(TORCH_INDEX) torch torchvision)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The whole pipeline on synthetic_lt: five experts, the gate, the selective report. Run again, it finds the
# stages it made and builds only what is missing (an interrupted training continues from its last epoch).
demo: $(VENV)/.stamp
	$(PY) -m argse.train_experts --config configs/demo.yaml $(ARGS)
	$(PY) -m argse.train_gating --config configs/demo.yaml $(ARGS)
	$(PY) -m argse.evaluate --config configs/demo.yaml $(ARGS)

experts: $(VENV)/.stamp
	$(PY) -m argse.train_experts --config $(CONFIG) $(if $(EXPERTS),--experts $(EXPERTS)) $(PARALLEL_FLAG) $(TEAM_FLAG) $(ARGS)

gating: $(VENV)/.stamp
	$(PY) -m argse.train_gating --config $(CONFIG) $(ARGS)

evaluate: $(VENV)/.stamp
	$(PY) -m argse.evaluate --config $(CONFIG) $(ARGS)

predict: $(VENV)/.stamp
	$(PY) -m argse.predict --config $(CONFIG) $(INPUT) $(if $(RISK),--risk $(RISK) --delta $(DELTA),--rate $(RATE)) --method $(METHOD) $(ARGS)

# The run's stages, current or not, and their disk; ARGS="prune --dry-run" lists what prune would remove.
stages: $(VENV)/.stamp
	$(PY) -m argse.stages --config $(CONFIG) $(ARGS)

test: $(VENV)/.stamp
	$(PY) -m pytest -q

test-all: $(VENV)/.stamp
	$(PY) -m pytest -q -m ''

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check argse tests benchmarks studies
	$(VENV)/bin/ruff format --check argse tests benchmarks studies

# Experts, gate, evaluation and the results page outputs/results/<name>.md (OUT=... elsewhere) for one config.
reproduce: $(VENV)/.stamp
	$(PY) -m argse.reproduce --config $(CONFIG) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(OUT),--out $(OUT)) $(ARGS)

# Narasimhan et al. (ICLR 2024)'s Table 2 over seeds (docs/table2.md); default config: their CIFAR-100-LT protocol.
table2: $(VENV)/.stamp
	$(PY) -m argse.table2 --config $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),configs/cifar100_lt_narasimhan2024.yaml) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(OUT),--out $(OUT)) $(ARGS)

# Speed only; the accuracy tables of docs/ come from the studies (`python -m studies` lists them).
bench: $(VENV)/.stamp
	$(PY) -m benchmarks --out docs/performance.md
	$(PY) -m benchmarks.scaling --out docs/scaling.md

clean:
	rm -rf outputs/demo checkpoints/demo
