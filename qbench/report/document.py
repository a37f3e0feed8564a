"""Write a run (or the runs of one side: a commit's, a folder's) as report.md and a self-contained report.html,
with matplotlib plots (PNG, Agg canvas): latency by model and mode per engine, int8/fp32 size ratios and speedups;
then PyTorch's INT8 claims judged per case (qbench.compare.claims), the cases without numbers, history's regression list,
any markdown sections passed in (a comparison, for instance) and the results files that could not be read. The
markdown is the source; the HTML is converted from it with the plots embedded. A case measured in several
processes counts once, by the median of its per-process figures."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from qbench.compare.claims import claim_rows
from qbench.history.frame import record_row
from qbench.compare.steps import Regression
from qbench.records import MODES, RunRecord, mode_rank
from qbench.history.series import format_series_value, pair_key
from qbench.history.sides import describe_run
from qbench.history.store import RunFile
from qbench.report.claims import render_claims
from qbench.report.summary import problem_lines, provenance_lines, quality_table

__all__ = ["case_frame", "ratio_frame", "plot_latency", "plot_ratios", "render_markdown",
           "markdown_to_html", "write_report"]

PLOT_DPI = 110
HATCHES = ("", "//", "..", "xx")
# Beyond this many models (or model × setting labels) grouped bars are unreadable and slow to draw (the full nightly
# grid is 80 models): the plots show each mode · engine's distribution over the cases instead.
MAX_BAR_LABELS = 24


def case_frame(records: Iterable[RunRecord]):
    """One row per case of the ok records; a case measured in several processes counts once, by the median of its
    per-process figures (n says how many)."""
    import pandas as pd

    pairs: dict[str, str] = {}  # case_version -> pair_key: a function of the case, asked once per case
    rows = [{**record_row(r), "label": _label(r),
             "pair": pairs.get(r.case.case_version) or pairs.setdefault(r.case.case_version, pair_key(r.case))}
            for r in records if r.status == "ok"]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["engine"] = frame["engine"].fillna("-")
    if frame["weights"].nunique() > 1:
        frame["label"] = frame["label"] + " (" + frame["weights"] + ")"
    keys = ["label", "mode", "engine", "batch_size", "threads", "weights", "pair"]
    grouped = frame.groupby(keys, sort=False).agg(
        n=("record_id", "count"), latency_s=("latency_median_s", "median"), q1_s=("latency_q1_s", "median"),
        q3_s=("latency_q3_s", "median"), size_bytes=("size_bytes", "median"),
        memory_bytes=("peak_rss_run_bytes", "median")).reset_index()
    grouped["mode_order"] = grouped["mode"].map(mode_rank)
    return grouped.sort_values(["label", "batch_size", "threads", "mode_order", "engine"]).drop(columns="mode_order")


def _label(record: RunRecord) -> str:
    """The model, with the runner profile when it is not the native one (case ids end in @runner then)."""
    runner = record.case_id.partition("@")[2]
    return f"{record.case.model}@{runner}" if runner else record.case.model


def ratio_frame(cases):
    """int8 cases with size ratio (fp32 bytes / int8 bytes) and speedup (fp32 latency / int8 latency) against the
    fp32 case of the same setup (qbench.history.series.pair_key)."""
    if cases.empty:
        return cases
    fp32 = cases[cases["mode"] == "fp32"][["pair", "latency_s", "size_bytes"]]
    quant = cases[cases["mode"] != "fp32"]
    merged = quant.merge(fp32, on="pair", suffixes=("", "_fp32"))
    merged["size_ratio"] = merged["size_bytes_fp32"] / merged["size_bytes"]
    merged["speedup"] = merged["latency_s_fp32"] / merged["latency_s"]
    return merged


def _ms(seconds) -> str:
    return "-" if seconds is None or seconds != seconds else f"{seconds * 1e3:.4g}"


def _mb(value) -> str:
    return "-" if value is None or value != value else f"{value / 1e6:.4g}"


def _times(value) -> str:
    return "-" if value is None or value != value else f"{value:.2f}"


def _table(cases, ratios) -> str:
    from tabulate import tabulate

    extra = {(r.pair, r.mode, r.engine): r for r in ratios.itertuples()}
    rows = []
    for c in cases.itertuples():
        ratio = extra.get((c.pair, c.mode, c.engine))
        rows.append([c.label, c.mode, c.engine, c.batch_size, c.threads, c.n, _ms(c.latency_s),
                     f"{_ms(c.q1_s)}–{_ms(c.q3_s)}", _mb(c.size_bytes), _mb(c.memory_bytes),
                     _times(ratio.size_ratio if ratio else None), _times(ratio.speedup if ratio else None)])
    headers = ["model", "mode", "engine", "batch", "threads", "processes", "latency ms (median)", "IQR ms",
               "size MB", "peak RSS MB", "size ratio ×", "speedup ×"]
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


def _groups(frame) -> list[tuple]:
    return sorted({(b, t) for b, t in zip(frame["batch_size"], frame["threads"])})


def _mode_colors() -> dict[str, str]:
    return {mode: f"C{index}" for index, mode in enumerate(MODES)}


def _log_scale(ax) -> None:
    """A log y axis labelled with plain numbers (12, 200) rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def plot_latency(cases, path: Path) -> Path | None:
    """Grouped bars per engine (and batch/threads setting): median latency by model and mode, IQR as error bars,
    fp32 repeated in every panel as the reference; log scale when latencies span more than a decade."""
    from matplotlib.figure import Figure

    if cases.empty:
        return None
    engines = sorted(set(cases["engine"]) - {"-"}) or ["-"]
    panels = [(e, b, t) for e in engines for b, t in _groups(cases)]
    models = sorted(set(cases["label"]))
    if len(models) > MAX_BAR_LABELS:
        return _plot_distributions(cases, "latency_s", 1e3, path, f"Median latency of {len(cases)} cases by mode and "
                                   f"engine (box: quartiles over the cases)", "median latency per forward pass (ms")
    colors = _mode_colors()
    span = cases["latency_s"].max() / cases["latency_s"].min()
    figure = Figure(figsize=(max(6.0, 1.4 * len(models) + 2.5), 3.6 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (engine, batch, threads) in zip(axes, panels):
        shown = cases[((cases["engine"] == engine) | (cases["mode"] == "fp32")) & (cases["batch_size"] == batch)
                      & (cases["threads"] == threads)]
        modes = [m for m in MODES if m in set(shown["mode"])]
        width = 0.8 / max(len(modes), 1)
        for index, mode in enumerate(modes):
            rows = shown[shown["mode"] == mode].set_index("label").reindex(models)
            x = [i + (index - (len(modes) - 1) / 2) * width for i in range(len(models))]
            median = rows["latency_s"] * 1e3
            err = [(median - rows["q1_s"] * 1e3).clip(lower=0).fillna(0), (rows["q3_s"] * 1e3 - median).clip(
                lower=0).fillna(0)]
            ax.bar(x, median.fillna(0), width, yerr=err, capsize=2, label=mode, color=colors[mode])
        ax.set_xticks(range(len(models)), models, rotation=20 if len(models) > 4 else 0, ha="right" if len(
            models) > 4 else "center")
        ax.set_title(f"engine {engine} · batch {batch} · {threads} thread{'s' if threads > 1 else ''}")
        ax.set_ylabel("median latency per forward pass (ms" + (", log scale)" if span > 10 else ")"))
        if span > 10:
            _log_scale(ax)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="mode", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle("Latency by model and mode (bars: median; whiskers: interquartile range)")
    figure.savefig(path, dpi=PLOT_DPI)
    return path


def plot_ratios(ratios, column: str, path: Path) -> Path | None:
    """Grouped bars of an int8/fp32 ratio (size_ratio or speedup) by model, one bar per mode × engine."""
    from matplotlib.figure import Figure

    if ratios.empty:
        return None
    settings = _groups(ratios)
    if len(set(ratios["label"])) * len(settings) > MAX_BAR_LABELS:
        size = column == "size_ratio"
        what = "size ratio: fp32 bytes / int8 bytes" if size else "speedup: fp32 latency / int8 latency"
        return _plot_distributions(ratios, column, 1.0, path, f"{'Size' if size else 'Speedup'} ratio, fp32 over int8, "
                                   f"of {len(ratios)} cases by mode and engine (box: quartiles over the cases)",
                                   f"{what} (×", reference=4.0 if size else 1.0)
    ratios = ratios.assign(label=[m if len(settings) == 1 else f"{m}\nb{b} t{t}" for m, b, t in
                                  zip(ratios["label"], ratios["batch_size"], ratios["threads"])])
    labels = sorted(set(ratios["label"]))
    variants = sorted({(m, e) for m, e in zip(ratios["mode"], ratios["engine"])}, key=lambda v: (mode_rank(v[0]),
                                                                                                 v[1]))
    width = 0.8 / len(variants)
    colors, engines = _mode_colors(), sorted({e for _, e in variants})
    figure = Figure(figsize=(max(6.0, 1.2 * len(labels) + 4.0), 4.2), layout="constrained")
    ax = figure.subplots()
    for index, (mode, engine) in enumerate(variants):
        rows = ratios[(ratios["mode"] == mode) & (ratios["engine"] == engine)].set_index("label").reindex(labels)
        x = [i + (index - (len(variants) - 1) / 2) * width for i in range(len(labels))]
        bars = ax.bar(x, rows[column].fillna(0), width, label=f"{mode} · {engine}", color=colors[mode],
                      hatch=HATCHES[engines.index(engine) % len(HATCHES)], edgecolor="white")
        ax.bar_label(bars, fmt="%.3g", fontsize="x-small", padding=1)
    values = ratios[column]
    if column == "size_ratio":
        ax.axhline(4.0, color="0.4", linestyle="--", linewidth=1, label="4× (all weights int8)")
        ax.set_ylabel("size ratio: fp32 bytes / int8 bytes (×)")
        ax.set_title("Model size, fp32 over int8 (higher is smaller)")
    else:
        ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1, label="1× (as fast as fp32)")
        ax.set_ylabel("speedup: fp32 latency / int8 latency (×)")
        ax.set_title("Speedup of int8 over fp32 (higher is faster)")
    if values.max() / values.min() > 10:
        _log_scale(ax)
        ax.set_ylabel(ax.get_ylabel()[:-1] + ", log scale)")
    ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0)
    ax.margins(y=0.1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", title="mode · engine", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=PLOT_DPI)
    return path


def _plot_distributions(frame, column: str, scale: float, path: Path, title: str, ylabel: str,
                        reference: float | None = None) -> Path | None:
    """One box per mode · engine of `column` (× scale) over the rows: what a grid too large for bars looks like."""
    from matplotlib.figure import Figure

    frame = frame[frame[column].notna() & (frame[column] > 0)]
    if frame.empty:
        return None
    variants = sorted({(m, e) for m, e in zip(frame["mode"], frame["engine"])}, key=lambda v: (mode_rank(v[0]), v[1]))
    values = [frame[(frame["mode"] == m) & (frame["engine"] == e)][column].to_numpy() * scale for m, e in variants]
    colors = _mode_colors()
    figure = Figure(figsize=(max(6.0, 0.6 * len(variants) + 3.0), 4.6), layout="constrained")
    ax = figure.subplots()
    boxes = ax.boxplot(values, tick_labels=[f"{m} · {e}" for m, e in variants], patch_artist=True, showfliers=True,
                       flierprops={"markersize": 2})
    for box, (mode, _) in zip(boxes["boxes"], variants):
        box.set_facecolor(colors[mode])
    if reference is not None:
        ax.axhline(reference, color="0.4", linestyle="--", linewidth=1)
    if max(v.max() for v in values) / min(v.min() for v in values) > 10:
        _log_scale(ax)
        ylabel += ", log scale"
    ax.set_ylabel(ylabel + ")")
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize="medium")
    figure.savefig(path, dpi=PLOT_DPI)
    return path


def _provenance(runs: Sequence[RunFile]) -> list[str]:
    lines = []
    records = [r for run in runs for r in run.records]
    for line in provenance_lines(records):
        if line.startswith(" ") or "RANDOM-INIT" in line:
            lines.append(f"- **{line.strip()}**")
        else:
            label, _, rest = line.partition(" ")
            lines.append(f"- {label}: {rest.strip()}")
    variables = sorted({f"{k}={v}" for r in records for k, v in (r.environment.get("variables") or {}).items()
                        if not k.endswith("_NUM_THREADS")})
    if variables:
        lines.append(f"- variables: {', '.join(variables)}")
    for run in runs:
        lines.append(f"- run {describe_run(run)}: {len(run.records)} records, file `{run.path}`")
    return lines


def _regression_lines(regressions: Sequence[Regression], run_ids: set[str]) -> list[str]:
    from tabulate import tabulate

    if not regressions:
        return ["No regressions in this machine's history (step detection over every case and metric)."]

    def where(point) -> str:
        return f"{point.started_at[:19].replace('T', ' ')} `{(point.commit or 'unknown')[:8]}` torch {point.torch}"

    def changed(r: Regression) -> str:
        items = [f"{name} {a or '(unset)'} → {b or '(unset)'}" for name, (a, b) in r.environment_changes.items()]
        if r.last_good.commit != r.first_bad.commit:
            items.insert(0, f"commit `{(r.last_good.commit or '?')[:8]}` → `{(r.first_bad.commit or '?')[:8]}`")
        return "; ".join(items) or "-"

    rows = [[r.metric, r.case_id, f"{r.change:+.1%}", f"{format_series_value(r.before, r.metric)} → "
             f"{format_series_value(r.after, r.metric)}", f"{r.threshold:.1%} ({r.threshold_source})",
             where(r.last_good), where(r.first_bad) + (" **(this run)**" if r.first_bad.run_id in run_ids else ""),
             changed(r)] for r in regressions]
    return [tabulate(rows, headers=["metric", "case", "change", "before → after", "threshold", "last good",
                                    "first bad", "what changed"], tablefmt="pipe", disable_numparse=True)]


def render_markdown(runs: Sequence[RunFile], *, images: dict[str, str], label: str | None = None,
                    regressions: Sequence[Regression] = (), sections: Sequence[tuple[str, str]] = (),
                    errors: Sequence[object] = (), cases=None) -> str:
    """The report as markdown. images: plot name → relative path; sections: (title, markdown) appended as is;
    cases: case_frame of the runs' records when the caller has it."""
    records = [r for run in runs for r in run.records]
    cases = case_frame(records) if cases is None else cases
    ratios = ratio_frame(cases)
    suites = ", ".join(sorted({str((run.header.get("suite") or {}).get("name")) for run in runs}))
    label = label or ", ".join(f"run {(run.header.get('run_id') or '')[:8]}" for run in runs)
    out = [f"# qbench report: suite {suites}, {label}", "", *_provenance(runs), ""]
    out += ["## Results", ""]
    out += [_table(cases, ratios) if not cases.empty else "No case produced numbers.", ""]
    titles = {"latency": "Latency by model and mode", "size_ratio": "int8/fp32 size ratio",
              "speedup": "int8/fp32 speedup"}
    for name, title in titles.items():
        if name in images:
            out += [f"## {title}", "", f"![{title}]({images[name]})", ""]
    if any(r.status == "ok" and ("bandwidth" in r.metrics or "accuracy" in r.metrics) for r in records):
        out += ["## Bandwidth and accuracy", "", "Bytes moved per inference (counted from one forward's tensors), "
                "achieved GB/s and % of this machine's measured triad peak; top-1 agreement with the fp32 parent "
                "and logits SQNR on the evaluation images.", "", quality_table(records, markdown=True), ""]
    claims = claim_rows(records)
    if claims:
        out += ["## Claims", "", "PyTorch's INT8 claims per case against its fp32 parent of the same run: about 4x "
                "smaller, 2-4x less memory bandwidth, 2-4x faster, about the same accuracy.", "",
                render_claims(claims, "markdown"), ""]
    problems = problem_lines(records)
    if problems:
        out += ["## Cases without numbers", "", *[f"- {line}" for line in problems], ""]
    run_ids = {str(run.header.get("run_id")) for run in runs}
    out += ["## Regressions in history", "", *_regression_lines(regressions, run_ids), ""]
    for title, markdown in sections:
        out += [f"## {title}", "", markdown.strip(), ""]
    if errors:
        out += ["## Unreadable results files", "", *[f"- {error}" for error in errors], ""]
    return "\n".join(out)


def markdown_to_html(markdown: str, image_data: dict[str, bytes] | None = None, title: str = "qbench report") -> str:
    """A self-contained HTML page from the report's markdown (Python-Markdown with tables and fenced code);
    image_data: image path → PNG bytes, embedded as data URIs so the page travels as one file."""
    import markdown as python_markdown

    body = python_markdown.markdown(markdown, extensions=["tables", "fenced_code"])
    for src, data in (image_data or {}).items():
        body = body.replace(f'src="{html.escape(src)}"',
                            f'src="data:image/png;base64,{base64.b64encode(data).decode()}"')
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:2px 6px}"
             "th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def write_report(out: Path | str, runs: Sequence[RunFile], *, label: str | None = None,
                 regressions: Sequence[Regression] = (), sections: Sequence[tuple[str, str]] = (),
                 errors: Sequence[object] = ()) -> tuple[Path, Path]:
    """Write report.md, report.html and the plots into `out`; returns the paths of the two reports."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = case_frame([r for run in runs for r in run.records])
    ratios = ratio_frame(cases)
    made = {"latency": plot_latency(cases, out / "latency.png"),
            "size_ratio": plot_ratios(ratios, "size_ratio", out / "size_ratio.png"),
            "speedup": plot_ratios(ratios, "speedup", out / "speedup.png")}
    images = {name: path.name for name, path in made.items() if path is not None}
    markdown = render_markdown(runs, images=images, label=label, regressions=regressions, sections=sections,
                               errors=errors, cases=cases)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown, encoding="utf-8")
    data = {path.name: path.read_bytes() for path in made.values() if path is not None}
    html_path.write_text(markdown_to_html(markdown, data, title=markdown.splitlines()[0].lstrip("# ")),
                         encoding="utf-8")
    return md_path, html_path
