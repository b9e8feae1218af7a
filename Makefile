# The two commands of the README: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision from this machine's wheels (CUDA build, runs on CPU); override for other stacks.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: setup
	$(BIN)/python -m kd_plugin.prepare photos --output datasets/photos --scales 4
	$(BIN)/python kd_plugin/train.py -opt options/train/EDSR/train_EDSR_tiny_photos_x4.yml

lint: setup
	$(BIN)/ruff check kd_plugin tests setup.py

test: lint
	$(BIN)/python -m pytest -q
