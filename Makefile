# The two commands of the README: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision from this machine's wheels (CUDA build, runs on CPU); override for other stacks.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint data data-tasks labels ablation-gpu-short gpu-check

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[test,export]'
	@# the fused CPU slice kernel, built once now rather than at the first inference (where it cannot be built,
	@# the archs use the PyTorch path and this says why)
	$(BIN)/python -c "from kd_plugin.archs import fused_slice as f; print('fused CPU slice kernel:', 'built' if f.kernel() else f.failure())"
	touch $@

# Photo set, cached labels of the shipped T91 + BSD400 HDRNet teacher, DeformableHDRNet with KD from them and alone for
# the same measured time (kd_plugin/cli/demo.py). `make demo TEACHER=FILE`: a published x4 model file (IMDN, RLFN or
# any architecture spandrel recognises) as the teacher instead (docs/published-teachers.md).
demo: setup
	$(BIN)/python -m kd_plugin.cli.demo $(if $(TEACHER),--teacher $(TEACHER))

# Development data from ../shared/data: T91 pairs for training (and a held-out split of 10 for choosing settings);
# BSD400 pairs, 20 of them held out (BSD400_split/X{s}/val, which no network trains on), the other 380 merged with
# T91 into T91_BSD400/X{s} (links; the 7 T91 images under 128 px left out, so 128 px patches fit) and an LMDB of
# it at x4; links to Set5/Set14/BSD100 for reporting.
BSD400_HOLDOUT ?= 20
data: setup
	test -d datasets/T91/X4 || $(BIN)/python -m kd_plugin.cli.prepare lr --input ../shared/data/T91 --output datasets/T91 --scales 2 4
	test -d datasets/T91_split/X4 || $(BIN)/python -m kd_plugin.cli.prepare split --input datasets/T91/X4 --output datasets/T91_split/X4 --holdout 10
	test -d datasets/BSD400/X4 || $(BIN)/python -m kd_plugin.cli.prepare lr --input ../shared/data/BSD400 --output datasets/BSD400 --scales 2 4
	for s in 2 4; do \
	  test -d datasets/BSD400_split/X$$s || $(BIN)/python -m kd_plugin.cli.prepare split --input datasets/BSD400/X$$s --output datasets/BSD400_split/X$$s --holdout $(BSD400_HOLDOUT) || exit 1; \
	  test -d datasets/T91_BSD400/X$$s || $(BIN)/python -m kd_plugin.cli.prepare merge --input datasets/T91/X$$s --input datasets/BSD400_split/X$$s/train --output datasets/T91_BSD400/X$$s --min-size 128 || exit 1; \
	done
	test -d datasets/T91_BSD400/X4/HR.lmdb || $(BIN)/python -m kd_plugin.cli.prepare lmdb --input datasets/T91_BSD400/X4/HR --output datasets/T91_BSD400/X4/HR.lmdb --input datasets/T91_BSD400/X4/LR --output datasets/T91_BSD400/X4/LR.lmdb
	mkdir -p datasets; for s in Set5 Set14 BSD100; do ln -sfn ../../shared/data/$$s datasets/$$s; done

# The BD and DN tasks (RDN's degradation models; BI is `data`): T91 and BSD400 degraded at x4, the same 20 BSD400
# images held out, the rest merged with T91 into T91_BSD400_<D>/X4 and its LMDBs; Set5/Set14/BSD100 degraded the
# same way into <set>_<D>/X4/{HR,LR} for reporting. DN's noise is drawn from seed 0 and each image's name.
TASKS ?= BD DN
data-tasks: data
	@# BD sets built before 2026-12-07 followed RDN's x3 rule at x4 (docs/data.md): refuse to build on them
	@for f in datasets/*_BD/X4/degradation.json; do \
	  if [ -f "$$f" ] && ! grep -q rdn_parity "$$f"; then \
	    echo "$$f: BD data made with the x3 rule at x4, not RDN's x4 BD. Fix: rm -rf datasets/*_BD datasets/BSD400_BD_split, then make data-tasks" >&2; exit 1; \
	  fi; done
	for d in $(TASKS); do l=$$(echo $$d | tr A-Z a-z); \
	  test -d datasets/T91_$$d/X4 || $(BIN)/python -m kd_plugin.cli.prepare lr --degradation $$l --input ../shared/data/T91 --output datasets/T91_$$d --scales 4 || exit 1; \
	  test -d datasets/BSD400_$$d/X4 || $(BIN)/python -m kd_plugin.cli.prepare lr --degradation $$l --input ../shared/data/BSD400 --output datasets/BSD400_$$d --scales 4 || exit 1; \
	  test -d datasets/BSD400_$${d}_split/X4 || $(BIN)/python -m kd_plugin.cli.prepare split --input datasets/BSD400_$$d/X4 --output datasets/BSD400_$${d}_split/X4 --holdout $(BSD400_HOLDOUT) || exit 1; \
	  test -d datasets/T91_BSD400_$$d/X4 || $(BIN)/python -m kd_plugin.cli.prepare merge --input datasets/T91_$$d/X4 --input datasets/BSD400_$${d}_split/X4/train --output datasets/T91_BSD400_$$d/X4 --min-size 128 || exit 1; \
	  test -d datasets/T91_BSD400_$$d/X4/HR.lmdb || $(BIN)/python -m kd_plugin.cli.prepare lmdb --input datasets/T91_BSD400_$$d/X4/HR --output datasets/T91_BSD400_$$d/X4/HR.lmdb --input datasets/T91_BSD400_$$d/X4/LR --output datasets/T91_BSD400_$$d/X4/LR.lmdb || exit 1; \
	  for s in Set5 Set14 BSD100; do \
	    test -d datasets/$${s}_$$d/X4 || $(BIN)/python -m kd_plugin.cli.prepare lr --degradation $$l --input ../shared/data/$$s/HR --output datasets/$${s}_$$d --scales 4 || exit 1; \
	  done; \
	done

# Cached whole-image teacher labels (x8 self-ensemble, fp32) of the shipped teachers, for the
# options/train/KD/*_labels.yml recipes: on T91 about 0.5-2 min each on 2 CPU cores, on T91 + BSD400 several
# minutes each (the README gives the measured times).
labels: data
	test -d datasets/T91/X4/labels_HDRNet_T91_BSD400_x4_6k_x8.npy || $(BIN)/python -m kd_plugin.cli.prepare teacher-labels -opt options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_T91_x4_labels.yml --fp32 --npy
	test -d datasets/T91/X4/labels_EDSR_64x16_T91_x4_12k_x8.npy || $(BIN)/python -m kd_plugin.cli.prepare teacher-labels -opt options/train/KD/train_KD_EDSR_64x16_to_EDSR_32x4_T91_x4_labels.yml --fp32 --npy
	test -d datasets/T91/X4/labels_EDSR_64x16_T91_BSD400_x4_12k_x8.npy || $(BIN)/python -m kd_plugin.cli.prepare teacher-labels -opt options/train/KD/train_KD_EDSR_64x16_T91_BSD400_to_EDSR_32x4_T91_x4_labels.yml --fp32 --npy
	test -d datasets/T91_BSD400/X4/labels_HDRNet_T91_BSD400_x4_6k_x8.npy || $(BIN)/python -m kd_plugin.cli.prepare teacher-labels -opt options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_T91_BSD400_x4_labels.yml --fp32 --npy
	test -d datasets/T91_BSD400/X4/labels_EDSR_64x16_T91_x4_12k_x8.npy || $(BIN)/python -m kd_plugin.cli.prepare teacher-labels -opt options/train/KD/train_KD_EDSR_64x16_T91_to_EDSR_32x4_T91_BSD400_x4_labels.yml --fp32 --npy
	test -d datasets/T91_BSD400/X4/labels_EDSR_64x16_T91_BSD400_x4_12k_x8.npy || $(BIN)/python -m kd_plugin.cli.prepare teacher-labels -opt options/train/KD/train_KD_EDSR_64x16_to_EDSR_32x4_T91_BSD400_x4_labels.yml --fp32 --npy

# The GPU "short" ablation of HDRNet -> DeformableHDRNet x4 on T91 with the shipped teacher: the student
# alone, alone for the recipe's time, and the recipe, at 3000 iterations, three seeds. Sized by estimate for
# a GPU; not yet measured (no GPU has been lent to this project).
ablation-gpu-short: data
	$(BIN)/python -m kd_plugin.cli.ablation -opt options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_T91_x4.yml --total-iter 3000 --seeds 0 1 2 --sets Set5 Set14 BSD100 --output results/ablation_gpu_short

lint: setup
	$(BIN)/ruff check kd_plugin tests setup.py

# Two pytest-xdist workers, whole test files to each: most tests wait on a one-thread subprocess (train.py,
# torchrun, the CLIs), so one pytest process kept one of two cores busy.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The one prepared command for a lent GPU (kd_plugin/cli/gpu_check.py): results in results/gpu_check/.
gpu-check: setup
	$(BIN)/python -m kd_plugin.cli.gpu_check --output results/gpu_check
