"""``--local-rank``: ``torch.distributed.launch`` passes the hyphenated form; BasicSR's parser only
declares ``--local_rank`` (``basicsr/utils/options.py:88``) and rejects it."""
from kd_plugin.compat.record import applied


def normalise_argv(argv: list[str]) -> list[str]:
    """``argv`` with ``--local-rank`` spelled as BasicSR's parser expects."""
    fixed = [a.replace('--local-rank', '--local_rank', 1) if a.startswith('--local-rank') else a for a in argv]
    if fixed != argv:
        applied('--local-rank accepted')
    return fixed

