"""Statistics over seeds for the ablation table.

For one variant and one test set, ``values`` are the final students' scores, one per seed. The
difference to the baseline is taken per seed (same seed: same initialisation and the same random
crops), so it is the mean of paired differences with its standard error ``std(d) / sqrt(n)``
(sample std, ``ddof=1``). A difference smaller than twice its standard error is reported as
"within noise"; with one seed there is no noise estimate, and the table says so.
"""
import math
from dataclasses import dataclass


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass
class Delta:
    mean: float
    se: float | None      # standard error of the mean paired difference; None with one pair
    n: int

    @property
    def within_noise(self) -> bool:
        """True when ``|mean| < 2 * se`` (and when there is no noise estimate at all)."""
        return self.se is None or abs(self.mean) < 2 * self.se

    def __str__(self) -> str:
        if self.se is None:
            return f'{self.mean:+.2f} (1 seed: no noise estimate)'
        return f'{self.mean:+.2f} ± {self.se:.2f}' + (', within noise' if self.within_noise else '')


def paired_delta(values: dict[int, float], baseline: dict[int, float]) -> Delta | None:
    """Mean and standard error of ``values[s] - baseline[s]`` over the seeds both have (None if none)."""
    diffs = [values[s] - baseline[s] for s in sorted(values) if s in baseline]
    if not diffs:
        return None
    mean, std = mean_std(diffs)
    return Delta(mean, None if std is None else std / math.sqrt(len(diffs)), len(diffs))
