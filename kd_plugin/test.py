"""BasicSR testing with the plugin registered: ``python kd_plugin/test.py -opt FILE``.
Results go to ``<project>/results``."""
import sys
from os import path as osp

# Run as a script, Python puts kd_plugin/ itself first on sys.path; its modules must not shadow
# top-level ones, and the package must be importable from the project root.
if sys.path and osp.abspath(sys.path[0]) == osp.dirname(osp.abspath(__file__)):
    sys.path[0] = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Importing kd_plugin applies the BasicSR fixes and registers the plugin; basicsr is imported after.
from kd_plugin.entry import run_pipeline  # noqa: E402
from kd_plugin.runs import PROJECT_ROOT  # noqa: E402

if __name__ == '__main__':
    sys.exit(run_pipeline('test', PROJECT_ROOT))
