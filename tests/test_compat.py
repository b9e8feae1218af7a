"""Each compatibility fix: the trap is real without it, and gone with it."""
import multiprocessing
import os
import sys
from os import path as osp

import basicsr.train
import basicsr.utils.misc
import pytest
import torch
from basicsr.utils.file_client import FileClient

from kd_plugin.compat import APPLIED
from tests.helpers import free_port, run

# Only the torchvision alias, without importing kd_plugin (whose import applies every fix).
TORCHVISION_ALIAS_ONLY = ('import torchvision.transforms._functional_tensor as f\n'
                          'sys.modules["torchvision.transforms.functional_tensor"] = f\n')


def python(code: str):
    return run([sys.executable, '-c', code])


def test_plain_basicsr_import_fails_and_kd_plugin_fixes_it():
    plain = python('import basicsr')
    assert plain.returncode != 0 and 'functional_tensor' in plain.stderr
    fixed = python('import kd_plugin, basicsr.data.degradations as d; print(d.rgb_to_grayscale.__module__)')
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == 'torchvision.transforms._functional_tensor'
    assert 'torchvision functional_tensor alias' in APPLIED


def test_ndimage_filters_alias_when_scipy_dropped_it():
    scipy2 = 'import sys, scipy.ndimage; sys.modules["scipy.ndimage.filters"] = None\n'  # as in SciPy 2
    fixed = python(scipy2 + 'from kd_plugin.compat import apply_import_fixes; apply_import_fixes()\n'
                   'import scipy.ndimage, basicsr.metrics.niqe as n; print(n.convolve is scipy.ndimage.convolve)')
    assert fixed.stdout.strip() == 'True', fixed.stderr
    without = python(scipy2 + TORCHVISION_ALIAS_ONLY + 'import basicsr.metrics.niqe')
    assert without.returncode != 0 and 'scipy.ndimage.filters' in without.stderr


def test_distutils_comes_from_setuptools_when_python_has_none():
    py312 = 'import sys; sys.modules["distutils"] = None\n'  # as on Python 3.12
    fixed = python(py312 + 'from kd_plugin.compat import apply_import_fixes; apply_import_fixes()\n'
                   'import basicsr.archs.arch_util as a\n'
                   'print(a.LooseVersion("0.10") > a.LooseVersion("0.9"), "setuptools" in a.LooseVersion.__module__'
                   ' or "setuptools" in sys.modules["distutils"].__file__)')
    assert fixed.stdout.split() == ['True', 'True'], fixed.stderr
    no_setuptools = python(py312 + 'sys.modules["setuptools"] = sys.modules["_distutils_hack"] = None\n'
                           'from kd_plugin.compat.import_shims import provide_distutils; provide_distutils()')
    assert no_setuptools.returncode != 0
    assert 'pip install "setuptools>=68"' in no_setuptools.stderr


def _resume_opt(tmp_path, auto_resume=True):
    exp = tmp_path / 'experiments' / 'run'
    (exp / 'training_states').mkdir(parents=True)
    (exp / 'models').mkdir()
    for it in (4, 12, 8):
        state = {'epoch': 1, 'iter': it, 'optimizers': [], 'schedulers': []}
        torch.save(state, exp / 'training_states' / f'{it}.state')
    for it in (8, 12):
        torch.save({'params': {}}, exp / 'models' / f'net_g_{it}.pth')
    return {'auto_resume': auto_resume, 'num_gpu': 0, 'model_type': 'KDModel', 'network_g': {}, 'network_t': {},
            'path': {'training_states': str(exp / 'training_states'), 'models': str(exp / 'models'),
                     'resume_state': None, 'pretrain_network_g': None, 'pretrain_network_t': '/teacher.pth',
                     'param_key_g': 'params_ema', 'param_key_t': 'params_ema'}}


def test_auto_resume_finds_latest_state_from_another_directory_on_cpu(tmp_path, monkeypatch):
    opt = _resume_opt(tmp_path)
    monkeypatch.chdir(tmp_path / 'experiments')  # not the root: upstream looks in ./experiments/<name>
    state = basicsr.train.load_resume_state(opt)
    assert state is not None and state['iter'] == 12
    assert opt['path']['resume_state'].endswith('12.state')
    assert state_is_on_cpu(state)


def state_is_on_cpu(state):
    return all(not torch.is_tensor(v) or v.device.type == 'cpu' for v in state.values())


def test_explicit_resume_state_loads_on_cpu(tmp_path):
    opt = _resume_opt(tmp_path, auto_resume=False)
    opt['path']['resume_state'] = opt['path']['training_states'] + '/8.state'
    assert basicsr.train.load_resume_state(opt)['iter'] == 8


def test_check_resume_redirects_only_networks_the_run_saved(tmp_path):
    opt = _resume_opt(tmp_path)
    opt['path']['resume_state'] = 'x/12.state'
    basicsr.utils.misc.check_resume(opt, 12)
    assert opt['path']['pretrain_network_g'].endswith('models/net_g_12.pth')
    assert opt['path']['param_key_g'] == 'params'
    assert opt['path']['pretrain_network_t'] == '/teacher.pth'  # the teacher keeps its own checkpoint
    assert opt['path']['param_key_t'] == 'params_ema'
    assert basicsr.train.check_resume is basicsr.utils.misc.check_resume

    lost = _resume_opt(tmp_path / 'lost')
    lost['path']['resume_state'] = 'x/4.state'  # no net_g_4.pth: upstream would load a missing file ...
    with pytest.raises(ValueError, match=r"resume: training state 'x/4.state' needs '.*net_g_4.pth', which does "
                                         r"not exist, so network_g would restart"):
        basicsr.utils.misc.check_resume(lost, 4)  # ... and the old fix skipped it: a silent restart from scratch


def test_resume_keeps_the_networks_the_model_class_declares_frozen(tmp_path):
    """The resume fix asks the model class (``frozen_networks``), not a hard-coded model name."""
    from kd_plugin.compat.resume import frozen_networks, resumed_networks
    from kd_plugin.models.kd_model import KDModel

    opt = _resume_opt(tmp_path)
    assert KDModel.frozen_networks == ('network_t',) and frozen_networks(opt) == {'network_t'}
    assert set(resumed_networks(opt, 12)) == {'network_g'}
    as_sr = dict(opt, model_type='SRModel')  # SRModel declares nothing frozen: every network is its own
    assert frozen_networks(as_sr) == set() and set(resumed_networks(as_sr, 12)) == {'network_g', 'network_t'}
    assert frozen_networks(dict(opt, model_type='NotRegistered')) == set()


def _read_in_child(lmdb_path, queue, parent_env_id):
    from kd_plugin.compat import lmdb_envs

    client = FileClient('lmdb', db_paths=[lmdb_path], client_keys=['gt'])
    env = client.client._client['gt']
    queue.put((len(client.get('img0', 'gt')), id(env) != parent_env_id,
               {pid for pid, _ in lmdb_envs._OPEN_ENVS} == {os.getpid()}))


def test_same_lmdb_opened_twice_and_after_fork(tiny_pairs):
    """Train and val on one LMDB share an environment; a forked worker opens its own (LMDB forbids using
    an environment across fork) instead of reusing or tripping over the parent's."""
    path = osp.join(tiny_pairs, 'HR.lmdb')
    first = FileClient('lmdb', db_paths=[path], client_keys=['gt'])
    second = FileClient('lmdb', db_paths=[path], client_keys=['gt'])  # py-lmdb >= 2 raised here
    assert first.get('img0', 'gt') == second.get('img0', 'gt')
    parent_env = first.client._client['gt']
    assert second.client._client['gt'] is parent_env
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(path, queue, id(parent_env)))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    size, own_env, only_own = queue.get(timeout=5)
    assert size == len(first.get('img0', 'gt')) and own_env and only_own
    assert first.get('img0', 'gt')  # the parent's environment is untouched by the child


def test_lmdb_opened_again_with_other_options_is_an_error_and_envs_close_at_exit(tiny_pairs):

    path = osp.join(tiny_pairs, 'LR.lmdb')
    FileClient('lmdb', db_paths=[path], client_keys=['lq'])
    with pytest.raises(ValueError, match=r"io_backend: the LMDB .*LR.lmdb' is already open in this process with "
                                         r".*'readahead': False.*asks for .*'readahead': True"):
        FileClient('lmdb', db_paths=[path], client_keys=['lq'], readahead=True)
    code = ('import kd_plugin, sys\nfrom basicsr.utils.file_client import FileClient\n'
            'from kd_plugin.compat import lmdb_envs\n'
            f'c = FileClient("lmdb", db_paths=[{path!r}], client_keys=["lq"])\n'
            'env = c.client._client["lq"]\nlmdb_envs.close_envs()\n'
            'try:\n    env.begin()\nexcept Exception as e:\n    print("closed:", type(e).__name__)\n')
    result = run([sys.executable, '-c', code])
    assert result.stdout.strip().startswith('closed:'), result.stderr[-2000:]


def test_pytorch_launcher_initialises_gloo_and_wraps_ddp_on_cpu():
    code = ('import kd_plugin, torch\n'
            'from basicsr.utils.dist_util import init_dist\n'
            'from basicsr.models.base_model import BaseModel\n'
            'init_dist("pytorch")\n'
            'print(torch.distributed.get_backend())\n'
            'm = BaseModel({"num_gpu": 0, "is_train": True, "dist": True})\n'
            'net = m.model_to_device(torch.nn.Linear(2, 2))\n'
            'print(type(net).__name__, net.device_ids)\n')
    env = {'CUDA_VISIBLE_DEVICES': '', 'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1',
           'MASTER_PORT': str(free_port())}
    result = run([sys.executable, '-c', code], env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['gloo', 'DistributedDataParallel', 'None']


def test_fixes_do_nothing_where_upstream_is_fine(monkeypatch):
    from kd_plugin.compat import import_shims, record

    monkeypatch.setattr(record, 'APPLIED', [])
    monkeypatch.setattr(import_shims, 'applied', record.applied)
    before = dict(sys.modules)
    import_shims.alias_ndimage_filters()  # SciPy 1.x still has the module
    import_shims.provide_distutils()      # Python 3.11 still has distutils
    assert record.APPLIED == []
    assert sys.modules['scipy.ndimage.filters'] is before['scipy.ndimage.filters']


class _Model:
    """The attributes BaseModel's save methods read, nothing else."""

    def __init__(self, folder):
        import basicsr.models.base_model as base_model

        self.opt = {'path': {'models': str(folder), 'training_states': str(folder)}}
        self.net = torch.nn.Linear(2, 2)
        self.optimizers = [torch.optim.Adam(self.net.parameters())]
        self.schedulers = []
        self.get_bare_model = lambda net: net
        self.save_network = base_model.BaseModel.save_network.__get__(self)
        self.save_training_state = base_model.BaseModel.save_training_state.__get__(self)


def test_checkpoint_writes_are_atomic_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    assert 'atomic save_network (base_model.py)' in APPLIED
    model = _Model(tmp_path)
    model.save_network(model.net, 'net_g', 100)
    model.save_training_state(0, 100)
    saved = torch.load(tmp_path / 'net_g_100.pth', weights_only=True)
    assert torch.equal(saved['params']['weight'], model.net.weight)
    assert torch.load(tmp_path / '100.state', weights_only=True)['iter'] == 100
    before = (tmp_path / 'net_g_100.pth').read_bytes()

    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):  # a full disk: some bytes written, then an error
        f.write(b'\x80\x02partial')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(torch, 'save', dies_half_way)
    monkeypatch.setattr('time.sleep', lambda s: None)
    with torch.no_grad():
        model.net.weight.add_(1)
    with pytest.raises(OSError, match=r"net_g_100\.pth.*No space left.*Fix: free disk space"):
        model.save_network(model.net, 'net_g', 100)
    with pytest.raises(OSError, match=r"200\.state"):
        model.save_training_state(0, 200)
    monkeypatch.setattr(torch, 'save', real_save)
    assert (tmp_path / 'net_g_100.pth').read_bytes() == before  # the complete old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ['100.state', 'net_g_100.pth']  # no temp, no 200.state


def test_prefetch_threads_stop_at_exit_instead_of_dying_inside_the_loader():
    import time

    from basicsr.data import prefetch_dataloader

    from kd_plugin.compat import prefetch_exit

    assert any('prefetch thread stopped at exit' in name for name in APPLIED)
    produced = []

    def endless():
        while True:
            produced.append(1)
            yield torch.zeros(1)

    generator = prefetch_dataloader.PrefetchGenerator(endless(), 1)  # what PrefetchDataLoader.__iter__ makes
    assert torch.equal(next(generator), torch.zeros(1))
    time.sleep(0.3)
    assert generator.is_alive()  # blocked on the full queue, as BasicSR's thread is between batches
    assert prefetch_exit._HANDLER  # the exit handler was registered by the first generator
    start = time.time()
    prefetch_exit.stop_prefetch_threads()
    assert not generator.is_alive() and time.time() - start < 2
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count  # nothing is read any more
