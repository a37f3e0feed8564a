"""Place one measured case on its machine's roofline: achieved bandwidth and compute, arithmetic intensity, the
attainable ceiling, and whether memory or compute bounds it. Pure arithmetic over stored records; stdlib only.
A bad dtype or a non-positive latency is a ConfigError.

Inputs are what records hold: metrics.bandwidth (bytes moved and MACs per forward of the batch, counted by
qbench.runner.probes.traffic), a latency in seconds per forward of the batch (the median of the latency samples), and
details.peaks (qbench.runner.probes.peaks). Bandwidth percentages are against the triad peak (a read-read-write stream,
like an operator's traffic); GB are 1e9 bytes, GMAC 1e9 multiply-accumulates.
"""

from __future__ import annotations

import math

from qbench.errors import ConfigError
from qbench.metrics import achieved_gbps, peak_bandwidth_pct

__all__ = ["DTYPES", "derive"]

DTYPES = {"int8": "int8_gmacs", "fp32": "fp32_gmacs"}


def _ratio(numerator, denominator) -> float | None:
    if numerator is None or not denominator or not math.isfinite(denominator):
        return None
    return numerator / denominator


def derive(bandwidth: dict, latency_s: float, peaks: dict | None, dtype: str) -> dict:
    """Roofline figures of one case. `dtype` picks the compute ceiling ("int8" or "fp32"). Without peaks, only
    what needs none: achieved_gbps, achieved_gmacs, arithmetic_intensity; the rest are None."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if not latency_s or latency_s <= 0:
        raise ConfigError(f"latency_s must be positive, not {latency_s!r}")
    total, macs = bandwidth["bytes_total"], bandwidth["macs"]
    gbps = achieved_gbps(total, latency_s)
    achieved_gmacs = macs / latency_s / 1e9
    intensity = _ratio(macs, total)
    result = {"achieved_gbps": gbps, "achieved_gmacs": achieved_gmacs, "arithmetic_intensity": intensity,
              "pct_peak_bandwidth": None, "peak_gbps": None, "peak_gmacs": None, "attainable_gmacs": None,
              "pct_roofline": None, "bound": None, "ridge_intensity": None, "dtype": dtype}
    if not peaks:
        return result
    peak_gbps, peak_gmacs = peaks.get("triad_gbps"), peaks.get(DTYPES[dtype])
    result.update(peak_gbps=peak_gbps, peak_gmacs=peak_gmacs,
                  pct_peak_bandwidth=peak_bandwidth_pct(gbps, peaks))
    if peak_gbps and peak_gmacs and intensity is not None:
        memory_ceiling = intensity * peak_gbps
        attainable = min(peak_gmacs, memory_ceiling)
        result.update(attainable_gmacs=attainable, pct_roofline=_percent(achieved_gmacs, attainable),
                      bound="memory" if memory_ceiling < peak_gmacs else "compute",
                      ridge_intensity=peak_gmacs / peak_gbps)
    return result


def _percent(value, ceiling) -> float | None:
    ratio = _ratio(value, ceiling)
    return None if ratio is None else 100.0 * ratio
