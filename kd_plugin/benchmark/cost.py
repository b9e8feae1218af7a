"""What running a network costs: parameters, FLOPs, latency and peak memory at one input size."""
import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from os import path as osp
from typing import Any

import torch

from kd_plugin.benchmark.flops import count_flops, count_params
from kd_plugin.benchmark.timing import autocast_context, median_latency, peak_memory_bytes
from kd_plugin.model_loading import OnnxNet
from kd_plugin.onnx_export import ExportError, export_onnx

DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def measure_cost(net: torch.nn.Module, lr_size: tuple[int, int], threads: int, runs: int, cuda: bool,
                 cpu_dtypes: tuple[str, ...] = ('fp32', 'bf16'), onnx: bool = False) -> dict[str, Any]:
    """Parameters, GFLOPs and latencies (ms) / peak MiB of ``net`` at one ``[1, 3, H, W]`` input: on the
    CPU (``threads`` threads) in each of ``cpu_dtypes``, and with ``cuda`` in fp32/fp16/bf16 with and
    without channels_last, and with ``onnx`` in onnxruntime's CPU provider. Keys: ``params``, ``gflops``,
    ``cpu_<dtype>_ms``, ``cuda_<dtype>[_cl]_ms``, ``cuda_<dtype>[_cl]_peak_mib``, ``ort_cpu_ms``/``ort_note``."""
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, *lr_size)
    cost: dict[str, Any] = {'params': count_params(net), 'gflops': count_flops(net, x) / 1e9}
    cpu = torch.device('cpu')
    for label in cpu_dtypes:
        def run(dtype=DTYPES[label]):
            with autocast_context(cpu, dtype):
                return net(x)
        cost[f'cpu_{label}_ms'] = median_latency(run, cpu, warmup=1, runs=runs) * 1e3
    if cuda:
        dev = torch.device('cuda')
        gpu_net = net.to(dev)
        for label in ('fp32', 'fp16', 'bf16'):
            for layout in ('', '_cl'):
                fmt = torch.channels_last if layout else torch.contiguous_format
                gpu_net.to(memory_format=fmt)
                xg = x.to(dev).contiguous(memory_format=fmt)

                def run(dtype=DTYPES[label], xg=xg):
                    with autocast_context(dev, dtype):
                        return gpu_net(xg)
                cost[f'cuda_{label}{layout}_ms'] = median_latency(run, dev, warmup=5, runs=max(runs, 20)) * 1e3
                cost[f'cuda_{label}{layout}_peak_mib'] = peak_memory_bytes(run, dev) / 2**20
        net.to(cpu, memory_format=torch.contiguous_format)
    if onnx:
        cost.update(onnxruntime_latency(net, lr_size, threads, runs))
    return cost


@contextmanager
def _onnxruntime_session(net: torch.nn.Module, threads: int, profile: bool = False) -> Iterator[OnnxNet | str]:
    """``net`` exported to a temporary ONNX file (:mod:`kd_plugin.onnx_export`) and loaded in onnxruntime's CPU
    provider with ``threads`` threads (and its profiler on, with ``profile``), for the block; or, where that cannot
    be, the reason as a string."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        yield 'onnxruntime not installed (pip install -e ".[export]")'
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'model.onnx')
        try:
            export_onnx(net.float().eval(), path, opset=20)
        except ExportError as err:
            yield f'no ONNX export: {err}'
            return
        yield OnnxNet(path, threads=threads, profile_prefix=osp.join(tmp, 'profile') if profile else None)


def onnxruntime_latency(net: torch.nn.Module, lr_size: tuple[int, int], threads: int, runs: int) -> dict[str, Any]:
    """``ort_cpu_ms``: median latency of ``net`` exported to ONNX (:mod:`kd_plugin.onnx_export`) in onnxruntime's
    CPU provider with ``threads`` threads; ``ort_note`` says why not when it cannot be measured."""
    with _onnxruntime_session(net, threads) as session:
        if isinstance(session, str):
            return {'ort_note': session}
        x = torch.rand(1, 3, *lr_size)
        return {'ort_cpu_ms': median_latency(lambda: session(x), torch.device('cpu'), warmup=1, runs=runs) * 1e3}


def onnxruntime_op_shares(net: torch.nn.Module, lr_size: tuple[int, int], threads: int,
                          runs: int) -> dict[str, float]:
    """Where onnxruntime spends its time on ``net`` exported to ONNX: each op type's share (0-1) of the summed
    node kernel time over ``runs`` runs after one warm-up, from onnxruntime's own profiler, largest first.
    Empty when onnxruntime is not installed or the export fails."""
    with _onnxruntime_session(net, threads, profile=True) as session:
        if isinstance(session, str):
            return {}
        x = torch.rand(1, 3, *lr_size)
        for _ in range(runs + 1):
            session(x)
        with open(session.session.end_profiling()) as f:
            events = json.load(f)
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time'):
            totals[event['args']['op_name']] += event['dur']
    whole = sum(totals.values()) or 1.0
    return dict(sorted(((op, t / whole) for op, t in totals.items()), key=lambda kv: -kv[1]))
