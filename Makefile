# The two commands of the README: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision from this machine's wheels (CUDA build, runs on CPU); override for other stacks.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint data labels ablation-gpu-short gpu-check

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[test,export]'
	touch $@

# Photo set, then DeformableHDRNet without and with KD from the shipped HDRNet teacher (kd_plugin/demo.py).
demo: setup
	$(BIN)/python -m kd_plugin.demo

# Development data from ../shared/data: T91 pairs for training (and a held-out split of 10 for choosing settings),
# links to Set5/Set14/BSD100 for reporting.
data: setup
	test -d datasets/T91/X4 || $(BIN)/python -m kd_plugin.prepare lr --input ../shared/data/T91 --output datasets/T91 --scales 2 4
	test -d datasets/T91_split/X4 || $(BIN)/python -m kd_plugin.prepare split --input datasets/T91/X4 --output datasets/T91_split/X4 --holdout 10
	mkdir -p datasets; for s in Set5 Set14 BSD100; do ln -sfn ../../shared/data/$$s datasets/$$s; done

# Cached whole-image teacher labels (x8 self-ensemble, fp32) of the shipped teachers on T91, for the
# options/train/KD/*_labels.yml recipes (about 1.5 min each on 2 CPU cores).
labels: data
	test -d datasets/T91/X4/labels_HDRNet_T91_x4_12k_x8 || $(BIN)/python -m kd_plugin.prepare teacher-labels -opt options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_T91_x4_labels.yml --fp32
	test -d datasets/T91/X4/labels_EDSR_64x16_T91_x4_12k_x8 || $(BIN)/python -m kd_plugin.prepare teacher-labels -opt options/train/KD/train_KD_EDSR_64x16_to_EDSR_32x4_T91_x4_labels.yml --fp32

# The GPU "short" ablation of HDRNet -> DeformableHDRNet x4 on T91 with the shipped teacher: the student
# alone, alone for the recipe's time, and the recipe, at 3000 iterations, three seeds. Sized by estimate for
# a GPU; not yet measured (no GPU has been lent to this project).
ablation-gpu-short: data
	$(BIN)/python -m kd_plugin.ablation -opt options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_T91_x4.yml --total_iter 3000 --seeds 0 1 2 --sets Set5 Set14 BSD100 --output results/ablation_gpu_short

lint: setup
	$(BIN)/ruff check kd_plugin tests setup.py

test: lint
	$(BIN)/python -m pytest -q

# The one prepared command for a lent GPU (kd_plugin/gpu_check.py): results in results/gpu_check/.
gpu-check: setup
	$(BIN)/python -m kd_plugin.gpu_check --output results/gpu_check
