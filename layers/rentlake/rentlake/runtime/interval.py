"""The predictive interval read as a normal law: its z, where a rent stands in it, the market verdict.

Pure functions of numbers (no I/O, standard library only). The champion's card gives the interval's level
(0.9) and scale (``log``: log-normal, or ``linear``); the model gives its bounds.
"""

from __future__ import annotations

import math

# Φ⁻¹(0.95): the half-width of a central 90 % interval in standard deviations (the serving contract's
# level); ``z_for_level`` serves any other level a card declares.
Z_90 = 1.6448536269514722


def z_for_level(level: float) -> float:
    """Half-width, in standard deviations, of a central normal interval of probability ``level``.

    Bisection on ``math.erf`` (no scipy on the light path); exact for 0.9 within 1e-9.
    """
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < level:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def percentile_of(rent: float, low: float, high: float, z: float, scale: str) -> float | None:
    """Where ``rent`` stands in the predictive distribution, in percent.

    The interval ``[low, high]`` is read as a central interval of a normal law on the ``scale`` given
    (``"log"``: log-normal), ``z`` standard deviations either side of its centre.

    Parameters
    ----------
    rent
        The current rent.
    low, high
        Bounds of the predictive interval.
    z
        Half-width of the interval in standard deviations (:data:`Z_90` for 90 %).
    scale
        ``"log"`` or ``"linear"``.

    Returns
    -------
    float or None
        The percentile (0-100), or ``None`` when the interval is degenerate.
    """
    if scale == "log":
        if low <= 0 or high <= 0 or rent <= 0:
            return 0.0 if rent <= 0 < low else None
        lo, hi, x = math.log(low), math.log(high), math.log(rent)
    else:
        lo, hi, x = low, high, rent
    if not hi > lo:
        return None
    centre = (lo + hi) / 2
    sigma = (hi - lo) / (2 * z)
    phi = 0.5 * (1.0 + math.erf((x - centre) / (sigma * math.sqrt(2.0))))
    return min(100.0, max(0.0, 100.0 * phi))


def verdict_of(rent: float, low: float, high: float) -> str:
    """``"above"``, ``"within"`` or ``"below"`` the market interval ``[low, high]`` (bounds included)."""
    if rent > high:
        return "above"
    if rent < low:
        return "below"
    return "within"
