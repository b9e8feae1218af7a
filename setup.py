"""Install kd_plugin next to BasicSR 1.4.2: ``pip install -e .`` in a checkout, or ``pip install <checkout or
wheel>`` as a dependency of your own project. Either way the tools run in the current folder (your project):
experiments/, results/ and the relative paths of options files are there."""
import glob

from setuptools import find_packages, setup

#: ``kd-<tool>`` for each ``kd_plugin.cli.<module>`` (``python -m kd_plugin.cli.<module>`` works as well).
TOOLS = {'train': 'train', 'test': 'test', 'prepare': 'prepare', 'demo': 'demo', 'benchmark': 'benchmark',
         'ablation': 'ablation', 'infer': 'infer', 'export': 'export', 'overhead': 'kd_overhead',
         'slicing': 'slicing', 'arch-cost': 'arch_cost', 'label-quality': 'label_quality',
         'label-scale': 'label_scale', 'gpu-check': 'gpu_check'}


def shipped_files() -> list[tuple[str, list[str]]]:
    """The options files and checkpoints kd_plugin ships, installed under ``<prefix>/share/kd_plugin/`` with their
    repository paths (``kd_plugin.runs.shipped`` finds them there)."""
    files = sorted(glob.glob('options/**/*.yml', recursive=True)) + sorted(glob.glob('checkpoints/*'))
    folders: dict[str, list[str]] = {}
    for path in files:
        folders.setdefault(f'share/kd_plugin/{path.rsplit("/", 1)[0]}', []).append(path)
    return sorted(folders.items())


setup(
    name='kd_plugin',
    version='0.1.0',
    description='Knowledge distillation for image super-resolution, as a BasicSR plugin',
    packages=find_packages(include=['kd_plugin', 'kd_plugin.*']),
    package_data={'kd_plugin.archs': ['csrc/*.cpp']},  # the fused CPU slice kernel, compiled at first use
    data_files=shipped_files(),
    entry_points={'console_scripts': [f'kd-{name}=kd_plugin.cli.{module}:main' for name, module in TOOLS.items()]},
    python_requires='>=3.10,<3.14',
    install_requires=[
        # torch 2.14.1 / torchvision 0.29.1 here; torch 2.11 on the GPU machines.
        'torch>=2.6,<2.15',
        'torchvision>=0.21,<0.30',
        # The unmodified PyPI release; kd_plugin.compat makes it run on this stack.
        'basicsr==1.4.2',
        'opencv-python>=4.8,<6',
        'numpy>=1.24,<3',
        'pyyaml>=6,<7',
        'lmdb>=1.4,<4',
        'Pillow>=10,<13',
        'scikit-image>=0.22,<0.27',
        # The benchmark's PSNR-vs-cost plots (PNG); tqdm's progress bars come with basicsr.
        'matplotlib>=3.7,<4',
        'tqdm>=4.60',
        # Provides `distutils` on Python >= 3.12, which basicsr/archs/arch_util.py:6 imports.
        'setuptools>=68',
        # torch's C++ extension loader builds the fused CPU slice kernel with it (kd_plugin/archs/fused_slice.py).
        'ninja>=1.11',
        # Published SR checkpoints as KD teachers (SpandrelNet); brings safetensors, which checkpoint_io reads.
        'spandrel>=0.4.2,<0.5',
    ],
    extras_require={
        'test': ['pytest>=8,<10', 'pytest-xdist>=3.5,<4', 'ruff>=0.6'],
        # python -m kd_plugin.cli.export, ONNX models in kd_plugin.infer, the benchmark's onnxruntime column
        'export': ['onnx>=1.16,<2', 'onnxruntime>=1.18,<2', 'onnxscript>=0.2,<1'],
    },
)
