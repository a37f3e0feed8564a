"""qbench.compare.roofline: a case placed on its machine's roofline, checked on hand-computed values."""

import pytest

from qbench.errors import ConfigError
from qbench.compare.roofline import derive

PEAKS = {"copy_gbps": 12.0, "triad_gbps": 10.0, "fp32_gmacs": 50.0, "int8_gmacs": 200.0}


def test_memory_bound_case():
    # 1e8 bytes and 1e9 MACs in 20 ms: 5 GB/s, 50 GMAC/s, intensity 10 MAC/B.
    # int8 ceiling: min(200, 10 * 10 GB/s = 100) = 100 GMAC/s, memory-bound, half of it achieved.
    derived = derive({"bytes_total": 10**8, "macs": 10**9}, 0.02, PEAKS, "int8")
    assert derived["achieved_gbps"] == pytest.approx(5.0)
    assert derived["achieved_gmacs"] == pytest.approx(50.0)
    assert derived["arithmetic_intensity"] == pytest.approx(10.0)
    assert derived["pct_peak_bandwidth"] == pytest.approx(50.0)
    assert derived["attainable_gmacs"] == pytest.approx(100.0)
    assert derived["pct_roofline"] == pytest.approx(50.0)
    assert derived["bound"] == "memory"
    assert derived["ridge_intensity"] == pytest.approx(20.0)


def test_compute_bound_case_uses_the_dtypes_compute_peak():
    # Same case against the fp32 ceiling: min(50, 100) = 50 GMAC/s, compute-bound, all of it achieved.
    derived = derive({"bytes_total": 10**8, "macs": 10**9}, 0.02, PEAKS, "fp32")
    assert derived["attainable_gmacs"] == pytest.approx(50.0)
    assert derived["pct_roofline"] == pytest.approx(100.0)
    assert derived["bound"] == "compute"
    assert derived["peak_gmacs"] == 50.0 and derived["ridge_intensity"] == pytest.approx(5.0)


def test_without_peaks_only_what_needs_none():
    derived = derive({"bytes_total": 4 * 10**9, "macs": 2 * 10**9}, 2.0, None, "fp32")
    assert derived["achieved_gbps"] == pytest.approx(2.0)
    assert derived["achieved_gmacs"] == pytest.approx(1.0)
    assert derived["arithmetic_intensity"] == pytest.approx(0.5)
    assert all(derived[key] is None for key in ("pct_peak_bandwidth", "attainable_gmacs", "pct_roofline", "bound"))


def test_a_case_without_macs_has_zero_intensity_and_is_memory_bound():
    derived = derive({"bytes_total": 10**6, "macs": 0}, 0.001, PEAKS, "int8")
    assert derived["arithmetic_intensity"] == 0.0
    assert derived["attainable_gmacs"] == 0.0 and derived["pct_roofline"] is None
    assert derived["bound"] == "memory"


@pytest.mark.parametrize("latency, dtype", [(0.0, "int8"), (-1.0, "fp32"), (0.01, "bf16")])
def test_bad_arguments_are_errors(latency, dtype):
    with pytest.raises(ConfigError):
        derive({"bytes_total": 1, "macs": 1}, latency, PEAKS, dtype)
