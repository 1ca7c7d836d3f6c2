# The two set-up commands of the README. Each one creates or reuses .venv and the colcon workspace.
SHELL := /bin/bash
RUN := scripts/run.sh
TRAIN_ARGS ?= run_dir:=runs/leg_graph
SINGLE_ARGS ?= --task leg --algo mdemorl --epochs 15 --steps-per-epoch 1000 --seed 0 --out runs/leg_mdemorl

.PHONY: setup train train-single test test-fast bench clean

setup:
	@bash scripts/setup_env.sh

# The training graph (sim bridge, agent, learner, model trainer, planner) as separate ROS 2 processes.
train: setup
	@$(RUN) mdemorl train $(TRAIN_ARGS)

# The same algorithm in one process (what the benchmarks run).
train-single: setup
	@$(RUN) python -m mdemorl_learner.train $(SINGLE_ARGS)

test: setup
	@$(RUN) python -m pytest -q

# The unit tier: every test not marked integration (pytest.ini).
test-fast: setup
	@$(RUN) python -m pytest -q -m "not integration"

bench: setup
	@$(RUN) python bench/fig4.py

clean:
	rm -rf build install log
