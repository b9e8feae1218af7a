"""The one check for unknown keys in an options section, with a "did you mean"."""
import difflib
from collections.abc import Iterable


def closest(name: object, candidates: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` of ``candidates`` that look like ``name`` (for "did you mean" hints)."""
    return difflib.get_close_matches(str(name), list(candidates), n=n, cutoff=cutoff)


def check_keys(keys: Iterable[object], known: Iterable[str], where: str) -> None:
    """Raise ``ValueError`` for the first of ``keys`` not in ``known``: ``<where>.<key>: unknown key; did you
    mean `x`? Fix: ...`` (or the known keys when none is close)."""
    known = list(known)
    for key in keys:
        if key not in known:
            close = closest(key, known)
            hint = f'did you mean `{close[0]}`?' if close else f'known keys: {", ".join(known)}'
            raise ValueError(f'{where}.{key}: unknown key; {hint}. Fix: correct or remove it')


def require_keys(section: dict, required: Iterable[str], where: str, example: str) -> None:
    """Raise ``ValueError`` when ``section`` lacks one of ``required``."""
    missing = [key for key in required if key not in section]
    if missing:
        raise ValueError(f'{where}: missing key(s) {", ".join(missing)}. Fix: write it like {example}')
