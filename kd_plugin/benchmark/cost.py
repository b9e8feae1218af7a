"""What running a network costs: parameters, FLOPs, latency and peak memory at one input size."""
from typing import Any

import torch

from kd_plugin.benchmark.flops import count_flops, count_params
from kd_plugin.benchmark.timing import autocast_context, median_latency, peak_memory_bytes

DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def measure_cost(net: torch.nn.Module, lr_size: tuple[int, int], threads: int, runs: int, cuda: bool,
                 cpu_dtypes: tuple[str, ...] = ('fp32', 'bf16')) -> dict[str, Any]:
    """Parameters, GFLOPs and latencies (ms) / peak MiB of ``net`` at one ``[1, 3, H, W]`` input: on the
    CPU (``threads`` threads) in each of ``cpu_dtypes``, and with ``cuda`` in fp32/fp16/bf16 with and
    without channels_last. Keys: ``params``, ``gflops``, ``cpu_<dtype>_ms``, ``cuda_<dtype>[_cl]_ms``,
    ``cuda_<dtype>[_cl]_peak_mib``."""
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
    return cost
