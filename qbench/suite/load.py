"""Load and validate suite files (TOML) into a SuiteSpec. Strict and pure: unknown keys and values are errors,
and nothing here touches the machine. Model names are checked later, against the live registry (qbench.plan.expand).

A suite file:

    [suite]
    name = "smoke"                         # required
    description = "..."

    [defaults]                             # axes every [[matrix]] inherits unless it sets them
    engines = ["x86", "qnnpack"]
    batch_sizes = [1]
    threads = [1]
    weights = ["random"]                   # "random" | "pretrained" | "checkpoint:<path>"
    runners = ["native"]                   # ISA profiles: "native", "avx2" (qbench.suite.profiles)

    [[matrix]]                             # one or more; their cases are merged and de-duplicated
    models = ["resnet*", "mobilenet_v2"]   # names, fnmatch globs, or "package.module:factory"
    exclude = ["resnet152"]
    tags = ["quantizable"]                 # keep only models with all of these tags
    modes = ["fp32", "static_fx"]
    qconfigs = ["default", "histogram/per_channel/symmetric", "default@qnnpack"]   # qbench.suite.qconfig_names

    [calibration]                          # source = "synthetic" or an ImageFolder path
    [accuracy]                             # evaluation images (qbench.records.AccuracySpec); images = 0: off
    [qat]                                  # fine-tuning of qat cases (qbench.records.QatSpec)
    [measure]                              # latency sampling (qbench.records.MeasureSpec)
    [run]                                  # isolation = "fork" | "spawn", memory_limit_gb, repeat (processes
                                           # per case, in interleaved rounds)
    [thresholds]                           # regression thresholds for `qbench compare` of this suite's runs:
    latency = "5%"                         # metric = "N%" (relative) or "N" (absolute, display unit: ms, MB);
    size = "0.1%"                          # metrics as in qbench.metrics; grammar in qbench.thresholds
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from qbench.errors import ConfigError
from qbench.suite.qconfig_names import canonical_name
from qbench.records import (ENGINELESS_MODES, ENGINES, MODES, QAT_SCHEDULES, WEIGHT_KINDS, AccuracySpec, CalibrationSpec, MeasureSpec,
                            QatSpec)
from qbench.suite.profiles import RUNNERS
from qbench.thresholds import Threshold, parse_threshold_table

__all__ = ["MatrixSpec", "RunOptions", "SuiteSpec", "load_suite", "parse_suite", "resolve_suite_path"]

AXES = ("modes", "engines", "batch_sizes", "threads", "weights", "runners", "qconfigs")
MATRIX_KEYS = ("models", "exclude", "tags") + AXES
TOP_KEYS = ("suite", "defaults", "matrix", "calibration", "accuracy", "qat", "measure", "run", "thresholds")
SUITE_KEYS = ("name", "description")
ISOLATIONS = ("fork", "spawn")


@dataclass(frozen=True)
class MatrixSpec:
    models: tuple[str, ...]
    exclude: tuple[str, ...]
    tags: tuple[str, ...]
    modes: tuple[str, ...]
    engines: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    threads: tuple[int, ...]
    weights: tuple[str, ...]
    runners: tuple[str, ...] = ("native",)
    qconfigs: tuple[str, ...] = ("default",)


@dataclass(frozen=True)
class RunOptions:
    isolation: str = "fork"
    memory_limit_gb: float | None = None
    repeat: int = 1


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    matrices: tuple[MatrixSpec, ...]
    calibration: CalibrationSpec
    measure: MeasureSpec
    run: RunOptions
    path: str | None = None
    sha256: str | None = None
    thresholds: tuple[Threshold, ...] = ()
    accuracy: AccuracySpec = AccuracySpec()
    qat: QatSpec = QatSpec()

    def identity(self) -> dict:
        return {"name": self.name, "path": self.path, "sha256": self.sha256}


def resolve_suite_path(name_or_path: str, search_dirs: list[Path] | None = None) -> Path:
    """A path (anything ending in .toml or containing a slash) is used as is; a bare name is looked up as
    suites/<name>.toml in the current folder, then beside the qbench package (a source checkout)."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"suite file {name_or_path} does not exist")
        return path
    dirs = search_dirs or [Path.cwd() / "suites", Path(__file__).resolve().parents[2] / "suites"]
    for folder in dirs:
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for folder in dirs if folder.is_dir() for p in folder.glob("*.toml")})
    raise ConfigError(f"unknown suite {name_or_path!r}; known suites: {', '.join(known) or 'none'}")


def load_suite(name_or_path: str) -> SuiteSpec:
    path = resolve_suite_path(name_or_path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_suite(data, where=str(path), sha256=hashlib.sha256(raw).hexdigest())


def parse_suite(data: dict, where: str = "<suite>", sha256: str | None = None) -> SuiteSpec:
    _check_keys(data, TOP_KEYS, where)
    header = _table(data, "suite", where, required=True)
    _check_keys(header, SUITE_KEYS, f"{where}: [suite]")
    name = header.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: [suite] needs a non-empty string 'name'")
    defaults = _table(data, "defaults", where)
    _check_keys(defaults, AXES, f"{where}: [defaults]")
    matrices = data.get("matrix")
    if not isinstance(matrices, list) or not matrices:
        raise ConfigError(f"{where}: needs at least one [[matrix]] table")
    calibration = _parse_dataclass(CalibrationSpec, _table(data, "calibration", where), f"{where}: [calibration]")
    accuracy = _parse_dataclass(AccuracySpec, _table(data, "accuracy", where), f"{where}: [accuracy]")
    _check_sources(calibration, accuracy, where)
    return SuiteSpec(
        name=name,
        description=str(header.get("description", "")),
        matrices=tuple(_parse_matrix(m, defaults, f"{where}: [[matrix]] {i + 1}") for i, m in enumerate(matrices)),
        calibration=calibration,
        accuracy=accuracy,
        qat=_parse_qat(_table(data, "qat", where), f"{where}: [qat]"),
        measure=_parse_dataclass(MeasureSpec, _table(data, "measure", where), f"{where}: [measure]"),
        run=_parse_run(_table(data, "run", where), f"{where}: [run]"),
        path=None if where.startswith("<") else where,
        sha256=sha256,
        thresholds=parse_threshold_table(_table(data, "thresholds", where), f"{where}: [thresholds]",
                                         source=f"suite {name}"),
    )


def _check_sources(calibration: CalibrationSpec, accuracy: AccuracySpec, where: str) -> None:
    """Named sets are well formed, the gate's max_drop parses, and calibration never reads the evaluation images:
    the same folder, or the same split of a named set, for both is an error (a disjoint split, e.g. train for
    calibration and val for evaluation, or another set, is what a suite should name)."""
    from qbench.compare.accuracy_gate import parse_max_drop
    from qbench.data.sets import is_named, parse_source

    for what, source in (("[calibration]", calibration.source), ("[accuracy]", accuracy.source)):
        if is_named(source):
            try:
                parse_source(source)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {what} {exc}") from None
    try:
        parse_max_drop(accuracy.max_drop)
    except ConfigError as exc:
        raise ConfigError(f"{where}: [accuracy] {exc}") from None

    def folder(source: str) -> str:
        return source if is_named(source) else str(Path(source).expanduser().resolve())

    if (accuracy.images and "synthetic" not in (calibration.source, accuracy.source)
            and folder(calibration.source) == folder(accuracy.source)):
        raise ConfigError(f"{where}: [calibration] source and [accuracy] source are both {accuracy.source!r}: "
                          f"calibrating on the evaluation images flatters int8 accuracy; calibrate on a disjoint "
                          f"split (e.g. \"data:imagenette2-160/train\" against \"data:imagenette2-160/val\") or set")


def _parse_matrix(table, defaults: dict, where: str) -> MatrixSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    _check_keys(table, MATRIX_KEYS, where)
    merged = {**defaults, **table}
    for key in ("models", "modes"):
        if key not in merged:
            raise ConfigError(f"{where}: missing '{key}'")
    merged.setdefault("engines", [])
    merged.setdefault("batch_sizes", [1])
    merged.setdefault("threads", [1])
    merged.setdefault("weights", ["random"])
    merged.setdefault("runners", ["native"])
    merged.setdefault("qconfigs", ["default"])
    spec = MatrixSpec(
        models=_strings(merged, "models", where),
        exclude=_strings(merged, "exclude", where, required=False),
        tags=_strings(merged, "tags", where, required=False),
        modes=_choices(merged, "modes", MODES, where),
        engines=_choices(merged, "engines", ENGINES, where, required=False),
        batch_sizes=_positive_ints(merged, "batch_sizes", where),
        threads=_positive_ints(merged, "threads", where),
        weights=_weights(merged, where),
        runners=_choices(merged, "runners", RUNNERS, where),
        qconfigs=_qconfigs(merged, where),
    )
    if any(m not in ENGINELESS_MODES for m in spec.modes) and not spec.engines:
        raise ConfigError(f"{where}: quantized modes need 'engines' (one or more of {', '.join(ENGINES)})")
    return spec


def _parse_dataclass(cls, table: dict, where: str):
    allowed = {f.name: f for f in fields(cls)}
    _check_keys(table, tuple(allowed), where)
    for key, value in table.items():
        expected = type(getattr(cls(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ConfigError(f"{where}: '{key}' must be a {expected.__name__}, got {value!r}")
        if expected in (int, float) and value < 0:
            raise ConfigError(f"{where}: '{key}' must not be negative, got {value!r}")
        table = {**table, key: value}
    return cls(**table)


def _parse_qat(table: dict, where: str) -> QatSpec:
    spec = _parse_dataclass(QatSpec, table, where)
    if spec.schedule not in QAT_SCHEDULES:
        raise ConfigError(f"{where}: schedule {spec.schedule!r} is not one of {', '.join(QAT_SCHEDULES)}")
    return spec


def _qconfigs(table: dict, where: str) -> tuple[str, ...]:
    try:
        return tuple(dict.fromkeys(canonical_name(name) for name in _strings(table, "qconfigs", where)))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _parse_run(table: dict, where: str) -> RunOptions:
    _check_keys(table, ("isolation", "memory_limit_gb", "repeat"), where)
    isolation = table.get("isolation", "fork")
    if isolation not in ISOLATIONS:
        raise ConfigError(f"{where}: isolation {isolation!r} is not one of {', '.join(ISOLATIONS)}")
    limit = table.get("memory_limit_gb")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0):
        raise ConfigError(f"{where}: memory_limit_gb must be a positive number, got {limit!r}")
    repeat = table.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ConfigError(f"{where}: repeat must be a positive integer, got {repeat!r}")
    return RunOptions(isolation=isolation, memory_limit_gb=None if limit is None else float(limit), repeat=repeat)


def _table(data: dict, key: str, where: str, required: bool = False) -> dict:
    if key not in data:
        if required:
            raise ConfigError(f"{where}: missing [{key}] table")
        return {}
    if not isinstance(data[key], dict):
        raise ConfigError(f"{where}: '{key}' must be a table")
    return data[key]


def _check_keys(table: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(repr(k) for k in unknown)}; "
                          f"allowed: {', '.join(allowed)}")


def _strings(table: dict, key: str, where: str, required: bool = True) -> tuple[str, ...]:
    values = table.get(key, [] if not required else None)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{where}: '{key}' must be a list of non-empty strings")
    if required and not values:
        raise ConfigError(f"{where}: '{key}' must not be empty")
    return tuple(values)


def _choices(table: dict, key: str, allowed: tuple[str, ...], where: str, required: bool = True) -> tuple[str, ...]:
    values = _strings(table, key, where, required)
    for value in values:
        if value not in allowed:
            raise ConfigError(f"{where}: unknown {key[:-1]} {value!r}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def _positive_ints(table: dict, key: str, where: str) -> tuple[int, ...]:
    values = table[key]
    if isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)):
        raise ConfigError(f"{where}: '{key}' must be a list of positive integers, got {values!r}")
    return tuple(dict.fromkeys(values))


def _weights(table: dict, where: str) -> tuple[str, ...]:
    values = _strings(table, "weights", where)
    for value in values:
        kind, _, arg = value.partition(":")
        if kind not in WEIGHT_KINDS or (kind == "checkpoint") != bool(arg):
            raise ConfigError(f"{where}: weights {value!r} must be one of random, pretrained, checkpoint:<path>")
    return tuple(dict.fromkeys(values))
