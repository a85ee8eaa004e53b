"""Personalities spread evenly over trait space with a Halton low-discrepancy sequence."""

from __future__ import annotations

import numpy as np

_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19)


def radical_inverse(index: int, base: int) -> float:
    """The van der Corput radical inverse of ``index`` in ``base`` (in [0, 1))."""
    result, fraction = 0.0, 1.0 / base
    while index > 0:
        index, digit = divmod(index, base)
        result += digit * fraction
        fraction /= base
    return result


def halton_personality(index: int, traits: int, offset: int = 0) -> np.ndarray:
    """Trait vector in [-1, 1] for the ``index``-th spawn (one Halton dimension per trait).

    ``offset`` shifts the sequence (e.g. derived from the seed) so runs differ but stay well spread.
    """
    if traits > len(_PRIMES):
        raise ValueError(f"at most {len(_PRIMES)} traits are supported")
    point = [radical_inverse(index + 1 + offset, _PRIMES[d]) for d in range(traits)]
    return (np.array(point, dtype=np.float32) * 2.0 - 1.0).astype(np.float32)
