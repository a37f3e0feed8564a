"""Series from summary tables (qbench.history.summary): the points of every machine × case × metric, computed with
grouped columns instead of record objects, so that a year of nightlies is a few million numbers, not millions of
parsed records.

The rules are qbench.history.series' (one definition, checked against each other by tests/test_series.py): a point
is the median over a run's ok records of one case (same machine and case_version) of each record's value; n is how
many records had one; its precision is the run's `rel_err_<metric>` of that case; its provenance (commit, torch,
environment) is the case's first ok record's in the run, its run id and start the run header's. speedup and
compression pair each int8 case with the one fp32 case of the same run, machine and pair_key.

Points are kept as columns (PointList) and made into Point objects only when one is looked at (a regression's last
good and first bad run), so step detection over every series costs arrays, not objects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from qbench.history.series import (DERIVED_FROM, DERIVED_METRICS, Point, Series, derived_version, flat_environment,
                                   series_metrics)
from qbench.history.store import RunFile

__all__ = ["PointList", "SeriesBuild", "series_columns", "series_from_summaries", "series_by_metric"]

_KEYS = ["run", "machine_id", "case_id", "case_version"]
_FIRST = ["mode", "pair_key", "run_id", "started_at", "qbench_commit", "qbench_dirty", "torch", "environment"]


def series_columns(metrics) -> list[str]:
    """The summary columns series of these metrics need (status is filtered on, not read)."""
    from qbench.history.summary import NOISY

    measured = {DERIVED_FROM.get(name, name) for name in metrics}
    columns = _KEYS[1:] + _FIRST
    for name in sorted(measured):
        columns.append(f"value_{name}")
        if name in NOISY:
            columns.append(f"rel_err_{name}")
    return columns


class _Provenance:
    """Runs and first-record provenance shared by every PointList of one build."""

    def __init__(self, runs: list[RunFile]):
        self.runs = [(str(run.header.get("run_id") or ""), str(run.header.get("started_at") or ""), str(run.path))
                     for run in runs]
        order = sorted(range(len(self.runs)), key=lambda i: (self.runs[i][1], self.runs[i][0]))
        self.rank = np.empty(len(order), np.int64)  # run index -> position in time order
        self.rank[order] = np.arange(len(order))
        self.environments: dict[str, tuple] = {}

    def environment(self, text) -> tuple:
        if text not in self.environments:
            try:
                found = json.loads(text) if isinstance(text, str) else {}
            except json.JSONDecodeError:
                found = {}
            self.environments[text] = flat_environment(found if isinstance(found, dict) else {})
        return self.environments[text]


class PointList(Sequence):
    """The points of one series as columns; `[i]` and iteration make Point objects."""

    def __init__(self, provenance: _Provenance, columns: dict[str, np.ndarray]):
        self._provenance = provenance
        self._columns = columns

    def __len__(self) -> int:
        return len(self._columns["value"])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        c = self._columns
        run_id, started_at, file = self._provenance.runs[c["run"][index]]
        rel_err = float(c["rel_err"][index])
        dirty = c["qbench_dirty"][index]
        return Point(run_id=run_id or c["run_id"][index], started_at=started_at or c["started_at"][index],
                     commit=_text(c["qbench_commit"][index]), dirty=bool(dirty) if _known(dirty) else False,
                     torch=_text(c["torch"][index]), file=file, value=float(c["value"][index]),
                     rel_err=None if math.isnan(rel_err) else rel_err, n=int(c["n"][index]),
                     environment=self._provenance.environment(c["environment"][index]))

    def values(self) -> list[float]:
        return self._columns["value"].tolist()

    def rel_errs(self) -> list[float | None]:
        return [None if math.isnan(e) else e for e in self._columns["rel_err"].tolist()]

    def run_ids(self) -> list[str]:
        return [self._provenance.runs[i][0] or str(self._columns["run_id"][j])
                for j, i in enumerate(self._columns["run"].tolist())]


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pa.NA


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def series_from_summaries(summaries: list[tuple[RunFile, pa.Table]], metrics=None) -> list[Series]:
    """Series for every machine × case × metric of these runs' summary rows (only ok rows count)."""
    build = SeriesBuild(summaries, metrics)
    series = [one for name in sorted(build.wanted) for one in build.series(name)]
    return sorted(series, key=_order)


def series_by_metric(summaries: list[tuple[RunFile, pa.Table]], metrics):
    """(metric, its series) for each of `metrics` in turn, from one read of the runs' summary rows: what
    series_from_summaries gives, a metric at a time, so that a caller can drop each metric's points before the
    next is made. The list is emptied (its tables are no longer needed once the rows are one frame)."""
    build = SeriesBuild(summaries, metrics)
    for name in metrics:
        yield name, sorted(build.series(name), key=_order)


def _order(series: Series) -> tuple:
    return series.machine_id, series.case_id, series.metric, series.case_version


class SeriesBuild:
    """The rows of every run as one frame with each run × machine × case × definition numbered (`_gid`) and its
    first record's provenance; series of one metric at a time from it."""

    def __init__(self, summaries: list[tuple[RunFile, pa.Table]], metrics=None):
        import pyarrow.compute as pc

        self.wanted = set(metrics) if metrics is not None else set(series_metrics())
        columns = series_columns(self.wanted)
        tables = []
        for index, (_, table) in enumerate(summaries):
            if "status" in table.column_names:
                table = table.filter(pc.equal(table["status"], "ok"))
            table = table.select(columns)
            table = pa.table({name: _as_dictionary(table.column(name)) for name in columns})
            tables.append(table.append_column("run", pa.array(np.full(len(table), index, np.int32))))
        self.provenance = _Provenance([run for run, _ in summaries])
        summaries.clear()
        self.frame = None
        self.figures: dict[str, object] = {}
        if not tables or not sum(len(t) for t in tables):
            return
        frame = pa.concat_tables(tables).to_pandas(strings_to_categorical=True)
        del tables
        for name in ("machine_id", "case_id", "case_version"):
            frame[name] = frame[name].astype("category")
        # one integer per run × machine × case × definition: the tables below join on it, not on four columns
        frame["_gid"] = frame.groupby(_KEYS, observed=True, sort=False).ngroup().to_numpy()
        self.first = frame.drop_duplicates("_gid", keep="first").set_index("_gid")[_KEYS + _FIRST]
        self.frame = frame

    def series(self, name: str) -> list[Series]:
        """The series of one metric (unordered)."""
        if self.frame is None:
            return []
        measured = DERIVED_FROM.get(name, name)
        if measured not in self.figures:
            self.figures[measured] = _figures(self.frame, measured)
        figures = self.figures[measured]
        if name in DERIVED_METRICS:
            points = _derived(figures, self.first)
        else:
            points = figures.join(self.first, how="inner")
            points["series_version"] = points["case_version"]
        return _split(points, name, self.provenance)


def _figures(frame, name: str):
    """Per run and case: value (median of the records' values), n, rel_err."""
    value = f"value_{name}"
    error = f"rel_err_{name}"
    picked = frame[["_gid", value] + ([error] if error in frame else [])].dropna(subset=[value])
    grouped = picked.groupby("_gid", sort=False)
    out = grouped[value].agg(["median", "size"]).rename(columns={"median": "value", "size": "n"})
    out["rel_err"] = grouped[error].first() if error in frame else np.nan
    return out


def _derived(figures, first):
    """int8 / fp32 pairs of one run, machine and pair_key: value = fp32 figure / int8 figure."""
    cases = first.reset_index()
    fp32 = cases[cases["mode"] == "fp32"]
    unique = fp32[~fp32.duplicated(["run", "machine_id", "pair_key"], keep=False)]
    base = unique[["run", "machine_id", "pair_key", "case_id", "case_version", "_gid"]].rename(
        columns={"case_id": "base_case", "case_version": "base_version", "_gid": "base_gid"})
    quant = cases[cases["mode"] != "fp32"].merge(base, on=["run", "machine_id", "pair_key"])
    quant = quant.merge(figures, left_on="_gid", right_index=True)
    base_figures = figures.rename(columns={"value": "base_value", "n": "base_n", "rel_err": "base_err"})
    quant = quant.merge(base_figures, left_on="base_gid", right_index=True)
    quant = quant[quant["value"] != 0]
    quant = quant.assign(value=quant["base_value"] / quant["value"],
                         rel_err=np.hypot(quant["rel_err"], quant["base_err"]),
                         n=np.minimum(quant["n"], quant["base_n"]))
    pair = quant["case_version"].astype(str) + "/" + quant["base_version"].astype(str)
    versions = {key: derived_version(*key.split("/")) for key in pair.unique()}
    quant["series_version"] = pair.map(versions).astype("category")
    return quant


def _split(points, metric: str, provenance: _Provenance) -> list[Series]:
    """One Series per machine × case × (series) case_version, its points in run order, as column slices."""
    if points.empty:
        return []
    group = points.groupby(["machine_id", "case_id", "series_version"], sort=False, observed=True).ngroup()
    points = points.assign(_group=group.to_numpy(), _rank=provenance.rank[points["run"].to_numpy()])
    points = points.sort_values(["_group", "_rank"], kind="stable")
    groups = points["_group"].to_numpy()
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    stops = np.r_[starts[1:], len(groups)]
    firsts = points.iloc[starts]
    machines, cases = firsts["machine_id"].astype(str).tolist(), firsts["case_id"].astype(str).tolist()
    versions = firsts["series_version"].astype(str).tolist()
    bases = firsts["base_case"].astype(str).tolist() if "base_case" in points else None
    kept = ("run", "value", "rel_err", "n", "qbench_commit", "qbench_dirty", "torch", "environment", "run_id",
            "started_at")
    arrays = {name: _array(points[name]) for name in kept}
    out = []
    for index, (start, stop) in enumerate(zip(starts.tolist(), stops.tolist())):
        sources = (cases[index],) if bases is None else (cases[index], bases[index])
        columns = {name: array[start:stop] for name, array in arrays.items()}
        out.append(Series(machines[index], cases[index], versions[index], metric, sources,
                          PointList(provenance, columns)))
    return out


def _as_dictionary(column):
    """Strings as dictionary arrays (one type for every run's table, whether read from the store or computed)."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.string()).dictionary_encode()
    if pa.types.is_dictionary(column.type) and column.type.index_type != pa.int32():
        column = column.cast(pa.dictionary(pa.int32(), column.type.value_type))
    return column


class _Coded:
    """A categorical column as codes into shared categories: 4 bytes a point, not a reference to a string."""

    def __init__(self, codes: np.ndarray, categories: list):
        self.codes, self.categories = codes, categories

    def __getitem__(self, index):
        if isinstance(index, slice):
            return _Coded(self.codes[index], self.categories)
        code = self.codes[index]
        return None if code < 0 else self.categories[code]


def _array(column):
    if column.name in ("value", "rel_err"):
        return column.to_numpy(dtype=float, na_value=np.nan)
    if column.name in ("run", "n"):
        return column.to_numpy(dtype=np.int64)
    if hasattr(column, "cat"):
        return _Coded(column.cat.codes.to_numpy(dtype=np.int32), list(column.cat.categories))
    return column.astype(object).where(column.notna(), None).to_numpy(dtype=object)
