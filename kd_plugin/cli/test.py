"""BasicSR testing with the plugin registered: ``python kd_plugin/cli/test.py -opt FILE``.
Results go to ``<project>/results``."""
import sys
from os import path as osp

# Run as a script, Python puts kd_plugin/cli/ first on sys.path; the package must be importable from the
# project root instead (and its modules must not shadow top-level ones).
_HERE = osp.dirname(osp.abspath(__file__))
if sys.path and osp.abspath(sys.path[0]) == _HERE:
    sys.path[0] = osp.dirname(osp.dirname(_HERE))

# Importing kd_plugin applies the BasicSR fixes and registers the plugin; basicsr is imported after.
from kd_plugin.pipeline import run_pipeline  # noqa: E402
from kd_plugin.runs import project_root  # noqa: E402


def main() -> int:
    """``kd-test`` or ``python -m kd_plugin.cli.test``: BasicSR's test pipeline in the current folder, the
    user's project (also with kd_plugin installed as a dependency)."""
    return run_pipeline('test', project_root())


if __name__ == '__main__':
    # Run as a file (python kd_plugin/cli/test.py), BasicSR's own convention holds: the root is the checkout
    # that holds the file, wherever the command starts; run as a module, the current folder.
    sys.exit(main() if __spec__ is not None else run_pipeline('test', osp.dirname(osp.dirname(_HERE))))
