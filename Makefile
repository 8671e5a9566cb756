# The README's two commands. Both create .venv and install the project on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: quickstart test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,hf]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the shipped checkpoints: I-WALT vs V-WALT x 3 blocks x 3 timesteps x 3
# synthetic tasks as a Ray Tune sweep (dashboard on 127.0.0.1:8265), then the report.
# SWEEP_FLAGS=--fresh reruns every trial (needed after the code changed; an interrupted run
# resumes without it).
SWEEP_FLAGS ?=
quickstart: $(STAMP)
	$(VENV)/bin/walt-probe sweep --gin_file=experiments/quickstart.gin --no-report $(SWEEP_FLAGS)
	$(VENV)/bin/walt-probe report runs/sweeps/quickstart --out results/quickstart
	@echo "plots, results.csv and summary.md: results/quickstart/"

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info
