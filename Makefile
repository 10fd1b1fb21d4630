# The two front-door commands: `make demo` and `make test`. Both create .venv on first use and
# never reinstall: the install is keyed on a stamp file newer than pyproject.toml.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch lies on this machine's disk; a bare `torch` would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

export WANDB_SILENT := true
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0

.PHONY: demo test lint install clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "$(TORCH)"; fi
	$(PY) -m pip install -q -e ".[dev,export,minatar]"
	@touch $(STAMP)

install: $(STAMP)

# The demo trains CartPole as a population of 8 seeds in one process (each member stops once solved), evaluates
# every member and writes the report, which shows the 8 members as seeds of one config.
demo: $(STAMP)
	rm -rf runs/demo-cartpole
	$(VENV)/bin/dlforge train configs/dqn/cartpole.yaml population.size=8 --name demo-cartpole
	$(VENV)/bin/dlforge eval runs/demo-cartpole --episodes 20
	$(VENV)/bin/dlforge report runs/demo-cartpole --out runs/demo-cartpole/report
	@echo "members: runs/demo-cartpole/population.json  (each member a run folder: runs/demo-cartpole/members/seed<N>)"
	@echo "W&B offline runs, one per member: runs/demo-cartpole/members/*/wandb/offline-run-*  (upload: wandb sync <folder>)"
	@echo "learning curves: runs/demo-cartpole/report/curves/charts_episodic_return.png  (all plots: runs/demo-cartpole/report/index.html)"

test: $(STAMP)
	$(PY) -m pytest tests --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs
