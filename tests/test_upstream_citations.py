"""Every ``file.py:LINE`` of BasicSR that the package or the README cites still says what we say it does.

The citations name the upstream lines our workarounds exist for. Each one found in the text must be
listed here with a snippet of that line in the installed ``basicsr==1.4.2``, so a citation that
drifts (or a new one nobody checked) fails this test.
"""
import glob
import re
from os import path as osp

import basicsr
import pytest

from tests.helpers import ROOT

BASICSR = osp.dirname(basicsr.__file__)
CITED = {
    'archs/__init__.py:23': 'logger = get_root_logger()',
    'archs/arch_util.py:6': 'from distutils.version import LooseVersion',
    'data/data_util.py:142': "input_lmdb_keys = [line.split('.')[0] for line in fin]",
    'data/data_util.py:144': "gt_lmdb_keys = [line.split('.')[0] for line in fin]",
    'data/prefetch_dataloader.py:7': 'class PrefetchGenerator(threading.Thread):',
    'data/prefetch_dataloader.py:22': 'self.daemon = True',
    'data/degradations.py:8': 'from torchvision.transforms.functional_tensor import rgb_to_grayscale',
    'losses/__init__.py:29': 'logger = get_root_logger()',
    'metrics/niqe.py:5': 'from scipy.ndimage.filters import convolve',
    'models/base_model.py:97': 'net = DistributedDataParallel(',
    'models/base_model.py:195': '@master_only',
    'models/base_model.py:229': 'torch.save(save_dict, save_path)',
    'models/base_model.py:305': '@master_only',
    'models/base_model.py:327': 'torch.save(state, save_path)',
    'models/sr_model.py:6': 'from basicsr.archs import build_network',
    'models/sr_model.py:66': 'if self.cri_pix is None and self.cri_perceptual is None:',
    'models/sr_model.py:67': "raise ValueError('Both pixel and perceptual losses are None.')",
    'models/srgan_model.py:4': 'from basicsr.archs import build_network',
    'test.py:8': 'parse_options',
    'train.py:14': 'parse_options',
    'train.py:71': "state_path = osp.join('experiments', opt['name'], 'training_states')",
    'train.py:85': 'device_id = torch.cuda.current_device()',
    'train.py:112': "log_file = osp.join(opt['path']['log']",
    'utils/dist_util.py:24': 'torch.cuda.set_device(rank % num_gpus)',
    'utils/file_client.py:112': 'lmdb.open(path',
    'utils/misc.py:116': "opt['path'][name] = osp.join(opt['path']['models'], f'net_{basename}_{resume_iter}.pth')",
    'utils/options.py:88': "parser.add_argument('--local_rank'",
    'utils/registry.py:68': "ret = self._obj_map.get(name + '_' + suffix)",
}
CITATION = re.compile(r'((?:basicsr/)?[\w/]*\w+\.py):(\d+)(?:-(\d+))?')


def upstream_file(cited: str) -> str:
    """``basicsr/x/y.py`` or a bare ``y.py`` (unique in BasicSR) -> path relative to the package."""
    if cited.startswith('basicsr/'):
        return cited[len('basicsr/'):]
    matches = [osp.relpath(p, BASICSR) for p in glob.glob(osp.join(BASICSR, '**', osp.basename(cited)),
                                                          recursive=True)]
    assert len(matches) == 1, f'{cited} is ambiguous or unknown in basicsr: {matches}'
    return matches[0]


def citations() -> set[str]:
    sources = glob.glob(osp.join(ROOT, 'kd_plugin', '**', '*.py'), recursive=True) + [osp.join(ROOT, 'README.md')]
    found = set()
    for source in sources:
        for file, first, last in CITATION.findall(open(source).read()):
            in_basicsr = file.startswith('basicsr/') or glob.glob(osp.join(BASICSR, '**', osp.basename(file)),
                                                                  recursive=True)
            if file.startswith(('kd_plugin/', 'tests/')) or not in_basicsr:
                continue  # our own files, or a name BasicSR does not have
            for line in range(int(first), int(last or first) + 1):
                found.add(f'{upstream_file(file)}:{line}')
    return found


def test_every_citation_in_the_package_is_listed_here():
    unlisted = citations() - set(CITED)
    assert not unlisted, f'add these citations to CITED with the text of the upstream line: {sorted(unlisted)}'


@pytest.mark.parametrize('citation', sorted(CITED))
def test_cited_upstream_line_says_what_we_claim(citation):
    assert basicsr.__version__ == '1.4.2'
    file, line = citation.rsplit(':', 1)
    lines = open(osp.join(BASICSR, file)).read().splitlines()
    assert CITED[citation] in lines[int(line) - 1], f'basicsr/{file}:{line} is now: {lines[int(line) - 1]!r}'
