"""Draw the docs' figures from tables already in docs/results.md (no measurement is run).

    .venv/bin/python docs/images/make_figures.py

Writes docs/images/benchmark_psnr_vs_latency.png: mean Y-PSNR over Set5, Set14 and BSD100 against CPU fp32
latency, per model, from the table "Benchmark on T91: every model, 1200 iterations".
"""
import re
from os import path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
RESULTS = osp.join(HERE, osp.pardir, 'results.md')
HEADER = '| model | params | GFLOPs @480x270 | Set5 PSNR / SSIM |'
OURS = ('HDRNet', 'DeformableHDRNet')
#: label offsets (points) and alignment where the default (right of the point, above) would overlap
LABEL_PLACES = {'DeformableHDRNet': ((6, -11), 'left'), 'EDSR_32x4': ((6, -11), 'left'),
                'SRVGGNetCompact': ((-6, 4), 'right'), 'EDSR 32x4 + KD': ((6, 4), 'left')}


def benchmark_rows(text: str) -> list[dict[str, str]]:
    """The rows of the T91 benchmark table, as {column: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    columns = [c.strip() for c in lines[start].strip('|').split('|')]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        rows.append(dict(zip(columns, (c.strip() for c in line.strip('|').split('|')))))
    return rows


def number(cell: str) -> float | None:
    """The first number of a cell ('28.65 / 0.7860' -> 28.65, '1,849' -> 1849.0, '–' -> None)."""
    found = re.search(r'\d[\d,]*\.?\d*', cell)
    return float(found.group().replace(',', '')) if found else None


def psnr_vs_latency(rows: list[dict[str, str]], out: str) -> None:
    fig, ax = plt.subplots(figsize=(9, 5.6))
    for row in rows:
        psnr, ms = number(row['mean PSNR / SSIM (scored sets)']), number(row['CPU fp32 ms (2 thr)'])
        name = row['model'].replace('_T91_x4', '')
        if ms is None:  # bicubic: no network to time
            ax.axhline(psnr, color='grey', linestyle='--', linewidth=1)
            ax.text(40, psnr + 0.03, f'bicubic {psnr:.2f} dB', color='grey', fontsize=8)
            continue
        ours = name.startswith(OURS)
        ax.scatter(ms, psnr, s=60 if ours else 35, color='tab:red' if ours else 'tab:blue', zorder=3,
                   marker='D' if '+ KD' in name else 'o')
        offset, align = LABEL_PLACES.get(name, ((6, 4), 'left'))
        ax.annotate(name, (ms, psnr), textcoords='offset points', xytext=offset, ha=align, fontsize=8)
    ax.set_xscale('log')
    ax.set_xlabel('CPU fp32 latency per 480x270 -> x4 frame (ms, 2 threads, log scale)')
    ax.set_ylabel('mean Y-PSNR over Set5, Set14, BSD100 (dB)')
    ax.set_title('Every model trained 1200 iterations on T91 (x4): quality against CPU latency')
    ax.grid(True, which='both', alpha=0.3)
    fig.text(0.01, 0.01, 'Machine: the 2-core CPU development machine, fp32, 2 threads, recorded 2026-11-29. '
             'Source: docs/results.md, "Benchmark on T91: every model, 1200 iterations".\n'
             'Red: this plugin\'s archs (diamond: distilled, the earlier KD recipes). '
             'A short budget: see the table\'s "Read with care".', fontsize=7, color='dimgrey')
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main() -> None:
    with open(RESULTS) as f:
        rows = benchmark_rows(f.read())
    psnr_vs_latency(rows, osp.join(HERE, 'benchmark_psnr_vs_latency.png'))


if __name__ == '__main__':
    main()
