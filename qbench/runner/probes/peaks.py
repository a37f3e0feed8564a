"""Measure this machine's peaks, the roofline's ceilings: STREAM-like copy and triad bandwidth, and fp32 and int8
GEMM throughput, at one thread count under one runner profile (qbench.history.peaks keeps them in results/<machine_id>/peaks.json).

Bandwidth follows STREAM's accounting: copy (`b.copy_(a)`) moves 2 arrays, triad (`a = b + 3 c`) moves 3; writes
are counted once (no write-allocate), so the figures compare with published STREAM numbers. Arrays are 4x the
last-level cache when the kernel says its size (else 256 MiB each), capped by free memory; each kernel's figure is
the best of `repeats` runs. A compute peak is the fastest of a few kernels, each recorded in `method`: fp32 is
`torch.mm` of square matrices or a ResNet-like 3x3 convolution; int8 is quantized::linear, a quantized 3x3
convolution (quint8 x qint8 under the x86 engine where it runs, else qnnpack: what qbench's int8 models execute;
the x86 engine runs linear on FBGEMM and convolution on oneDNN, AMX-capable) or `torch._int_mm` where CPU torch has
it.

The measuring functions import torch and run in a worker process (`peaks_task`).
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path


__all__ = ["cache_sizes", "stream_array_bytes",
           "stream_bandwidth", "gemm_fp32", "gemm_int8", "measure_peaks", "peaks_task"]

_CACHE_ROOT = "/sys/devices/system/cpu/cpu0/cache"
_DEFAULT_ARRAY_BYTES = 256 * 2**20
_MIN_ARRAY_BYTES = 64 * 2**20
_LLC_MULTIPLE = 4
_TRIAD_SCALAR = 3.0
_SIZE_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30}


# ----------------------------------------------------------------------------------------------- machine side

def _parse_size(text: str) -> int | None:
    text = text.strip().upper()
    if not text:
        return None
    multiplier = _SIZE_SUFFIXES.get(text[-1], 1)
    digits = text[:-1] if text[-1] in _SIZE_SUFFIXES else text
    return int(digits) * multiplier if digits.isdigit() else None


def cache_sizes(root: str = _CACHE_ROOT) -> dict:
    """{"L1d": bytes, "L2": bytes, "L3": bytes, ...} of CPU 0 as the kernel reports them; {} when it does not."""
    sizes = {}
    for index in sorted(Path(root).glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
        except OSError:
            continue
        if size is None or kind == "Instruction":
            continue
        sizes[f"L{level}{'d' if kind == 'Data' else ''}"] = size
    return sizes


def stream_array_bytes(caches: dict, available: int | None) -> int:
    """Each STREAM array: 4x the last-level cache (or 256 MiB unknown), at most an eighth of free memory."""
    levels = [size for name, size in caches.items() if not name.endswith("d")]
    wanted = max(_MIN_ARRAY_BYTES, _LLC_MULTIPLE * max(levels)) if levels else _DEFAULT_ARRAY_BYTES
    return min(wanted, available // 8) if available else wanted


# ----------------------------------------------------------------------------------------------- worker side

def _best_seconds(fn, repeats: int) -> float:
    fn()  # first touch and warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def stream_bandwidth(array_bytes: int, repeats: int = 5) -> dict:
    """Best-of-`repeats` copy and triad bandwidth in GB/s (1e9 bytes/s) over float32 arrays of `array_bytes`."""
    import torch

    count = max(1, array_bytes // 4)
    a, b, c = (torch.full((count,), value, dtype=torch.float32) for value in (1.0, 2.0, 0.5))
    copy_s = _best_seconds(lambda: b.copy_(a), repeats)
    triad_s = _best_seconds(lambda: torch.add(b, c, alpha=_TRIAD_SCALAR, out=a), repeats)
    nbytes = count * 4
    return {"copy_gbps": 2 * nbytes / copy_s / 1e9, "triad_gbps": 3 * nbytes / triad_s / 1e9,
            "array_bytes": nbytes, "repeats": repeats}


def _gmacs(fn, macs: int, repeats: int) -> float:
    return macs / _best_seconds(fn, repeats) / 1e9


# A ResNet-like 3x3 convolution: 256 -> 256 channels on 56x56 (1.85 GMAC per call at batch 1).
_CONV_CHANNELS, _CONV_SIZE, _CONV_KERNEL = 256, 56, 3


def _conv_macs() -> int:
    return _CONV_CHANNELS * _CONV_CHANNELS * _CONV_KERNEL**2 * _CONV_SIZE**2


def _best_of(candidates: dict, op_names: dict) -> dict:
    """The fastest of several kernels is the ceiling; every candidate's figure is kept beside it."""
    measured = {name: value for name, value in candidates.items() if value is not None}
    best = max(measured, key=measured.get)
    return {"gmacs": measured[best], "op": op_names[best], "probes": measured}


def gemm_fp32(n: int = 2048, repeats: int = 5) -> dict:
    """fp32 compute ceiling in GMAC/s: the faster of torch.mm on two n x n matrices and a 3x3 convolution
    (256 -> 256 channels, 56x56), each best of `repeats`."""
    import torch

    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randn(n, n, generator=generator) for _ in range(2))
    out = torch.empty(n, n)
    image = torch.randn(1, _CONV_CHANNELS, _CONV_SIZE, _CONV_SIZE, generator=generator)
    kernel = torch.randn(_CONV_CHANNELS, _CONV_CHANNELS, _CONV_KERNEL, _CONV_KERNEL, generator=generator)
    with torch.inference_mode():
        candidates = {"mm": _gmacs(lambda: torch.mm(x, y, out=out), n**3, repeats),
                      "conv3x3": _gmacs(lambda: torch.nn.functional.conv2d(image, kernel, padding=1), _conv_macs(),
                                        repeats)}
    return {**_best_of(candidates, {"mm": "torch.mm", "conv3x3": "torch.nn.functional.conv2d 3x3"}), "n": n}


def _int8_engine() -> str:
    import torch

    supported = torch.backends.quantized.supported_engines
    return next(engine for engine in ("x86", "fbgemm", "onednn", "qnnpack") if engine in supported)


def gemm_int8(n: int = 2048, repeats: int = 5) -> dict:
    """int8 compute ceiling in GMAC/s: the fastest of an n x n x n quantized::linear, a quantized 3x3 convolution
    (256 -> 256 channels, 56x56; the x86 engine runs it on oneDNN, AMX where the CPU has it, while its linear runs
    on FBGEMM), both quint8 x qint8 under the first engine of x86, fbgemm, onednn, qnnpack that works here, and
    torch._int_mm where CPU torch has it; each best of `repeats`."""
    import torch

    from qbench.runner.registry.engines import use_engine

    engine = _int8_engine()
    generator = torch.Generator().manual_seed(0)
    channels = torch.zeros(_CONV_CHANNELS, dtype=torch.long)
    with use_engine(engine), torch.inference_mode():
        x = torch.quantize_per_tensor(torch.rand(n, n, generator=generator), 1 / 255, 0, torch.quint8)
        weight = torch.quantize_per_tensor(torch.randn(n, n, generator=generator), 0.05, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(weight, None)
        image = torch.quantize_per_tensor(torch.rand(1, _CONV_CHANNELS, _CONV_SIZE, _CONV_SIZE, generator=generator),
                                          1 / 255, 0, torch.quint8)
        kernel = torch.quantize_per_channel(
            torch.randn(_CONV_CHANNELS, _CONV_CHANNELS, _CONV_KERNEL, _CONV_KERNEL, generator=generator),
            torch.full((_CONV_CHANNELS,), 0.05), channels, 0, torch.qint8)
        conv = torch.ops.quantized.conv2d_prepack(kernel, None, [1, 1], [1, 1], [1, 1], 1)
        candidates = {"linear": _gmacs(lambda: torch.ops.quantized.linear(x, packed, 1.0, 0), n**3, repeats),
                      "conv3x3": _gmacs(lambda: torch.ops.quantized.conv2d(image, conv, 1.0, 0), _conv_macs(),
                                        repeats),
                      "int_mm": _int_mm_gmacs(n, repeats, generator)}
    names = {"linear": "quantized::linear", "conv3x3": "quantized::conv2d 3x3", "int_mm": "torch._int_mm"}
    return {**_best_of(candidates, names), "engine": engine, "n": n}


def _int_mm_gmacs(n: int, repeats: int, generator) -> float | None:
    import torch

    if not hasattr(torch, "_int_mm"):
        return None
    a, b = (torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=generator) for _ in range(2))
    try:
        return _gmacs(lambda: torch._int_mm(a, b), n**3, repeats)
    except RuntimeError:
        return None  # no CPU kernel in this build


def _available_memory() -> int | None:
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        return None


def measure_peaks(threads: int, runner: str = "native", *, array_bytes: int | None = None, gemm_n: int = 2048,
                  repeats: int = 5) -> dict:
    """details.peaks of this process's machine at `threads` threads (the runner profile must already be in the
    environment: ISA caps take effect only at start-up)."""
    import torch

    torch.set_num_threads(threads)
    caches = cache_sizes()
    size = array_bytes or stream_array_bytes(caches, _available_memory())
    stream = stream_bandwidth(size, repeats)
    fp32, int8 = gemm_fp32(gemm_n, repeats), gemm_int8(gemm_n, repeats)
    return {
        "copy_gbps": stream["copy_gbps"], "triad_gbps": stream["triad_gbps"],
        "fp32_gmacs": fp32["gmacs"], "int8_gmacs": int8["gmacs"],
        "threads": threads, "runner": runner, "torch": torch.__version__,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "stream": {"array_bytes": stream["array_bytes"], "repeats": repeats, "dtype": "float32",
                       "copy": "b.copy_(a), 2 arrays", "triad": "torch.add(b, c, alpha=3, out=a), 3 arrays",
                       "caches": caches, "statistic": "best of repeats; writes counted once"},
            "fp32": {"op": fp32["op"], "n": fp32["n"], "probes_gmacs": fp32["probes"],
                     "statistic": "fastest kernel, best of repeats"},
            "int8": {"op": int8["op"], "engine": int8["engine"], "n": int8["n"], "probes_gmacs": int8["probes"],
                     "statistic": "fastest kernel, best of repeats"},
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
    }


def peaks_task(task: dict) -> dict:
    """Worker entry (qbench.runner.worker): task {"threads", "runner", optional "machine_id", "array_bytes",
    "gemm_n", "repeats"} -> {"status": "ok", "peaks": {...}}. A runner cap that did not take effect raises."""
    from qbench.runner.probes.kernels import probe_kernels
    from qbench.runner.worker import verify_runner

    runner = task.get("runner", "native")
    if runner != "native":
        verify_runner(runner, probe_kernels(_int8_engine()))
    machine_id = task.get("machine_id")
    if machine_id is None:
        from qbench.launch.machine import collect_machine

        machine_id = collect_machine()["machine_id"]
    peaks = measure_peaks(int(task.get("threads") or 1), runner, array_bytes=task.get("array_bytes"),
                          gemm_n=int(task.get("gemm_n") or 2048), repeats=int(task.get("repeats") or 5))
    return {"status": "ok", "peaks": {**peaks, "machine_id": machine_id}}
