"""Install kd_plugin next to BasicSR 1.4.2 (editable install recommended: ``pip install -e .``)."""
from setuptools import find_packages, setup

setup(
    name='kd_plugin',
    version='0.1.0',
    description='Knowledge distillation for image super-resolution, as a BasicSR plugin',
    packages=find_packages(include=['kd_plugin', 'kd_plugin.*']),
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
    ],
    extras_require={
        'test': ['pytest>=8,<10', 'pytest-xdist>=3.5,<4', 'ruff>=0.6'],
        # python -m kd_plugin.cli.export, ONNX models in kd_plugin.infer, the benchmark's onnxruntime column
        'export': ['onnx>=1.16,<2', 'onnxruntime>=1.18,<2', 'onnxscript>=0.2,<1'],
    },
)
