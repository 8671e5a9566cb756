# The README's two commands. Both create .venv and install the project on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: quickstart test mutation install clean

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

# Two pytest-xdist workers, whole files per worker (module fixtures such as the Ray sweep and
# the pretrained tokenizer run once); every test writes under its own tmp_path, ports are free
# ones. TEST_FLAGS="-n 0" runs in one process.
TEST_FLAGS ?= -n 2 --dist loadfile
test: $(STAMP)
	$(PY) -m pytest -q $(TEST_FLAGS) tests

# Mutation testing of the scientific core (not part of `make test`; about 35 min wall for the
# nine targets on the loaded 2-core VM). One module at a time, one worker, one thread: each
# mutant runs only the tests that reach it (config: [tool.mutmut] in pyproject.toml). Table and
# survivors: benchmarks/results/mutation.md. One module alone: make mutation
# MUTATION_MODULES=backbones.walt. A module with a MUTATION_SELECT_<module> list runs only
# those functions' mutants (mutmut's names: x_<function>, xǁ<Class>ǁ<method>).
MUTATION_MODULES ?= readouts.metrics readouts.tapvid readouts.pose readouts.accumulators \
                    walt.noise walt.windows backbones.walt probing.extract probing.cache
# The feature-cache key of probing/extract.py: what decides that an entry is reused or extracted
# again (the extraction loop itself is covered by the probe and cache tests, not mutated here).
MUTATION_SELECT_probing.extract := x_cache_key* x_cache_views* x_augments* x_ensure_entry* \
                                   x_ensure_probe_entry* x_noise_seeds* x_draw_seeds*
# ... and of probing/cache.py: the key's fields and digests, the dataset's identity, and the
# reader that finds an entry (superset of blocks) or refuses one written under another key.
MUTATION_SELECT_probing.cache := xǁCacheKeyǁ* x__digest* x_dataset_identity* x__hash_items* \
                                 xǁCacheEntryǁopen* xǁCacheEntryǁfind*
mutation_patterns = $(if $(MUTATION_SELECT_$(1)),$(foreach f,$(MUTATION_SELECT_$(1)),"$(1).$(f)"),"$(1).*")
define mutation_run
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 1 \
	  $(call mutation_patterns,$(1)) > mutants.$(1).log 2>&1 || { tail -20 mutants.$(1).log; exit 1; }

endef
mutation: $(STAMP)
	rm -rf mutants
	$(foreach m,$(MUTATION_MODULES),$(call mutation_run,$(m)))
	$(PY) benchmarks/mutation_table.py

clean:
	rm -rf $(VENV) build *.egg-info
