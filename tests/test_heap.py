"""``kd_plugin.heap.steady_heap``: large blocks come from the reused heap, not from fresh mappings."""
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# In a fresh process: hold an 8 MiB tensor and report the bytes glibc holds in mmapped blocks (mallinfo2).
PROBE = '''
import ctypes, sys
import torch
from kd_plugin.heap import steady_heap
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
                                               'fsmblks', 'uordblks', 'fordblks', 'keepcost')]
libc = ctypes.CDLL('libc.so.6')
libc.mallinfo2.restype = Info
applied = steady_heap() if sys.argv[1] == 'steady' else None
before = libc.mallinfo2().hblkhd
held = torch.empty(8 << 20, dtype=torch.uint8)
print(applied, libc.mallinfo2().hblkhd - before)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc only')
def test_a_steady_heap_serves_large_tensors_from_the_heap_not_fresh_mappings():
    def probe(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, '-c', PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0], int(out[1])

    applied, mapped = probe('steady')
    assert applied == 'True' and mapped == 0
    _, default_mapped = probe('default')
    assert default_mapped >= 8 << 20  # glibc's default: an 8 MiB block is a mapping of its own


def test_training_processes_and_the_equal_time_measurement_set_the_heap_policy(monkeypatch, capsys):
    from kd_plugin import pipeline
    from kd_plugin.ablation import equal_time

    calls = []
    for module in (pipeline, equal_time):
        monkeypatch.setattr(module, 'steady_heap', lambda name=module.__name__: calls.append(name))
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', '/nonexistent.yml'])
    assert pipeline.run_pipeline('train', ROOT) == 2
    assert 'error: -opt /nonexistent.yml: no such options file' in capsys.readouterr().err
    with pytest.raises(KeyError):
        equal_time.iteration_seconds({'bad': {}})
    assert calls == ['kd_plugin.pipeline', 'kd_plugin.ablation.equal_time']
