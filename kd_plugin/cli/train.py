"""BasicSR training with the plugin registered: ``python kd_plugin/cli/train.py -opt FILE [--launcher pytorch]
[--auto_resume] [--debug] [--force_yml key:sub=value]``. Experiments go to ``<project>/experiments``."""
import sys
from os import path as osp

# Run as a script, Python puts kd_plugin/cli/ first on sys.path; the package must be importable from the
# project root instead (and its modules must not shadow top-level ones).
_HERE = osp.dirname(osp.abspath(__file__))
if sys.path and osp.abspath(sys.path[0]) == _HERE:
    sys.path[0] = osp.dirname(osp.dirname(_HERE))

# Importing kd_plugin applies the BasicSR fixes and registers the plugin; basicsr is imported after.
from kd_plugin.pipeline import run_pipeline  # noqa: E402
from kd_plugin.runs import PROJECT_ROOT  # noqa: E402

if __name__ == '__main__':
    sys.exit(run_pipeline('train', PROJECT_ROOT))
