"""Plain-text tables that commands print: noise thresholds, kernel micro-benchmarks, the most sensitive layers,
this machine's peaks, the harness's own overhead."""

from __future__ import annotations

from collections import Counter

from tabulate import tabulate

from qbench.stats.summary import summarize

__all__ = ["noise_table", "microbench_table", "sensitivity_top", "peaks_description", "overhead_table", "db"]


def noise_table(records, thresholds: dict[str, dict[str, float]]) -> str:
    """Per case: ok repeats and the latency, throughput and memory thresholds measured from them."""
    ok = Counter(r.case_id for r in records if r.status == "ok")
    rows = [[case_id, ok[case_id], *(f"{by_metric[m] * 100:.1f}%" if m in by_metric else "-"
                                      for m in ("latency", "throughput", "memory"))]
            for case_id, by_metric in thresholds.items()]
    skipped = sorted({r.case_id for r in records} - set(thresholds))
    text = tabulate(rows, headers=["case", "ok repeats", "latency", "throughput", "memory"], tablefmt="simple")
    if skipped:
        text += "\nno threshold (fewer than 2 ok repeats): " + ", ".join(skipped)
    return text


def microbench_table(records) -> str:
    """Median per call (µs) with the spread (IQR as % of the median), one row per kernel and shape, one column
    per runner/engine."""
    columns, rows = [], {}
    for record in records:
        column = f"{record.case.runner}/{record.case.engine}"
        if column not in columns:
            columns.append(column)
        op, _, shape = record.case.model.removeprefix("kernel:").partition("[")
        cell = record.status if record.status != "ok" else _cell(record)
        rows.setdefault((op, shape.rstrip("]")), {})[column] = cell
    table = [[op, shape] + [cells.get(c, "") for c in columns] for (op, shape), cells in rows.items()]
    return tabulate(table, headers=["kernel", "shape"] + [f"{c} µs (IQR %)" for c in columns],
                    disable_numparse=True)


def _cell(record) -> str:
    summary = summarize(record.metrics["latency"]["samples"])
    spread = 100 * summary.relative_iqr
    return f"{summary.median * 1e6:,.1f} ({spread:.0f}%)"


def db(value) -> str:
    return "exact" if value is None else f"{value:.1f}"


def sensitivity_top(figures: dict, top: int) -> str:
    """The `top` most sensitive layers of a metrics.sensitivity dict as a table."""
    by_name = {entry["layer"]: entry for entry in figures["per_layer"]}
    rows = []
    for name in figures["ranking"][:top]:
        entry = by_name[name]
        only, all_but = entry["only_this_quantized"], entry["all_but_this"]
        rows.append([entry["rank"], name, entry["type"], db(entry["sqnr_db"]), f"{only['agreement']:.3f}",
                     db(only["sqnr_db"]), f"{all_but['agreement']:.3f}", db(all_but["sqnr_db"])])
    headers = ["rank", "layer", "type", "act SQNR dB", "only-this agree", "only-this SQNR dB",
               "all-but agree", "all-but SQNR dB"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def peaks_description(peaks: dict, machine_id: str, origin: str) -> str:
    """What `qbench peaks` prints: the four peaks, how each was measured, and the ridge points."""
    method = peaks["method"]
    stream, int8 = method["stream"], method["int8"]
    def probes(part: dict) -> str:
        return ", ".join(f"{name} {value:.1f}" for name, value in part["probes_gmacs"].items())

    threads = f"{peaks['threads']} thread{'s' if peaks['threads'] != 1 else ''}"
    return "\n".join([
        f"peaks of {machine_id}, runner {peaks['runner']}, {threads}, torch {peaks['torch']} "
        f"({origin} {peaks['measured_at']})",
        f"copy   {peaks['copy_gbps']:8.2f} GB/s    {stream['copy']}, {stream['array_bytes'] / 2**20:.0f} MiB each, "
        f"best of {stream['repeats']}",
        f"triad  {peaks['triad_gbps']:8.2f} GB/s    {stream['triad']}",
        f"fp32   {peaks['fp32_gmacs']:8.2f} GMAC/s  fastest of {probes(method['fp32'])} (mm n={method['fp32']['n']})",
        f"int8   {peaks['int8_gmacs']:8.2f} GMAC/s  fastest of {probes(int8)} on {int8['engine']}",
        f"ridge  fp32 {peaks['fp32_gmacs'] / peaks['triad_gbps']:.1f} MAC/B, "
        f"int8 {peaks['int8_gmacs'] / peaks['triad_gbps']:.1f} MAC/B (above: compute-bound)",
    ])


def _ms(summary) -> str:
    return f"median {summary.median * 1e3:.2f} ms, IQR {summary.iqr * 1e3:.2f} ms, n={summary.n}"


def overhead_table(overhead) -> str:
    """What `qbench overhead` prints of a qbench.launch.overhead.Overhead."""
    lines = []
    for isolation, walls in overhead.empty_case_s.items():
        start = overhead.preload_s.get(isolation)
        extra = f"; pool start-up once {start:.2f} s" if start else ""
        lines.append(f"empty case, {isolation:5} isolation: {_ms(summarize(walls))}{extra}")
    harness, bare = summarize(overhead.harness), summarize(overhead.bare)
    ratios = summarize(overhead.block_ratios)
    case_id = overhead.case.case_id
    lines += [f"{case_id}: qbench sampler {_ms(harness)}", f"{case_id}: bare loop      {_ms(bare)}",
              f"harness overhead ratio (qbench median / bare median): {harness.median / bare.median:.4f} overall; "
              f"per ABBA block median {ratios.median:.4f}, IQR {ratios.q1:.4f}-{ratios.q3:.4f}, n={ratios.n}"]
    return "\n".join(lines)
