"""Publish asv's HTML dashboards for qbench, working without internet: asv's own results plus exported `qbench run`
history at qbench's commits (<html>/), and the nightly timeline, one point per nightly (<html>/nightlies/, whose
navbar's project name links back; a click on a point opens nightly.html at that nightly's row), each go through
`asv publish`; then the scripts and styles its index.html loads from CDNs are swapped for the pinned copies in
qbench/report/vendor (MANIFEST.json: package, version, license, sha256 and the URL each replaces).

The page must be served over HTTP (it fetches its JSON); `file://` does not work, vendored or not.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qbench.report.asv_export import ExportReport, export_shown, read_history
from qbench.report.asv_timeline import BRANCH, NIGHTLY_PAGE, write_nightly_page
from qbench.errors import ConfigError, InfraError

__all__ = ["COMMIT_BUILDS", "VENDOR_DIR", "VIEWS", "NIGHTLY_DIR", "PublishReport", "load_asv_config", "publish_dashboard",
           "vendor_dashboard"]

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
NIGHTLY_LABELS = Path(__file__).resolve().parent / "nightly_labels.js"
PUBLISH_TIMEOUT_S = 3600.0
VIEWS = ("commits", "nightlies")
# Torch build sets a machine keeps in the commits view: a week of nightly builds (each is a series of its own there).
COMMIT_BUILDS = 7
NIGHTLY_DIR = "nightlies"
_LOADING_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_EXTERNAL_URL = re.compile(r'\b(src|href)="(https?://[^"]+)"')
_CDN_ONLY_ATTRIBUTES = re.compile(r'\s+(?:integrity|crossorigin|referrerpolicy)="[^"]*"')


@dataclass
class PublishReport:
    html: Path
    export: ExportReport | None
    asv_results: Path | None
    vendored: list[str]
    nightlies: ExportReport | None = None
    nightlies_html: Path | None = None


def load_asv_config(path: Path | str):
    """asv's own reader (comments allowed); a missing or broken file is bad input."""
    from asv.config import Config
    from asv.util import UserError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"asv config {path} not found; run from the qbench repository or pass --config")
    try:
        return Config.load(str(path))
    except (UserError, ValueError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None


def publish_dashboard(history: Path | str, config: Path | str, html: Path | str | None = None, *,
                      include_dirty: bool = False, views: tuple[str, ...] = VIEWS,
                      commit_builds: int | None = COMMIT_BUILDS) -> PublishReport:
    """Publish the views asked for (qbench.report.asv_export): `commits`, qbench history at qbench's commits beside a
    copy of the asv results that `config` names, into `html` (default: the config's html_dir); `nightlies`, the
    nightly timeline, into <html>/nightlies (into `html` itself when it is the only view). Each is `asv publish`ed
    and vendored. asv's own results folder is only read; history is read once for both. `commit_builds`: the
    commits view keeps each machine's most recent torch build sets (None: all; asv_export.export_shown)."""
    conf = load_asv_config(config)
    config = Path(config).resolve()
    root = config.parent
    html = (Path(html) if html is not None else root / conf.html_dir).resolve()
    asv_results = (root / conf.results_dir).resolve()
    history = Path(history).resolve()
    _check_html_target(html, protected=[history, asv_results, root])
    shown = read_history(history, root / conf.repo, branches=list(conf.branches), include_dirty=include_dirty)
    report = PublishReport(html=html, export=None, asv_results=asv_results if asv_results.is_dir() else None,
                           vendored=[])
    with tempfile.TemporaryDirectory(prefix="qbench-publish-") as staging:
        staging = Path(staging)
        if "commits" in views:
            results = staging / "commits"
            if asv_results.is_dir():
                shutil.copytree(asv_results, results)
            report.export = export_shown(shown, results, recent_builds=commit_builds)
            if not report.export.results_files and not (asv_results / "benchmarks.json").is_file():
                raise ConfigError(_nothing_to_publish(history, asv_results, report.export))
            _run_asv_publish(_staged_config(conf, root, staging / "commits.json", results, html))
            report.vendored = vendor_dashboard(html)
        if "nightlies" in views:
            target = html / NIGHTLY_DIR if "commits" in views else html
            results = staging / "nightlies"
            report.nightlies = export_shown(shown, results, timeline=staging / "timeline")
            if report.nightlies.nightlies:
                settings = {"project": f"{conf.project} nightlies", "repo": str(staging / "timeline"),
                            "branches": [BRANCH], "show_commit_url": NIGHTLY_PAGE + "#",
                            "project_url": "../" if "commits" in views else conf.project_url}
                _run_asv_publish(_staged_config(conf, root, staging / "nightlies.json", results, target, settings))
                report.vendored = vendor_dashboard(target)
                write_nightly_page(target, report.nightlies.nightlies, conf.hash_length)
                _add_script(target, NIGHTLY_LABELS)
                report.nightlies_html = target
            elif "commits" not in views:
                raise ConfigError(_nothing_to_publish(history, None, report.nightlies))
    return report


def _staged_config(conf, root: Path, path: Path, results: Path, html: Path, overrides: dict | None = None) -> Path:
    settings = {**vars(conf), "version": conf.api_version, "repo": str((root / conf.repo).resolve()),
                "results_dir": str(results), "html_dir": str(html),
                "benchmark_dir": str(root / conf.benchmark_dir), "env_dir": str(root / conf.env_dir),
                **(overrides or {})}
    path.write_text(json.dumps(settings, indent=2))
    return path


def _nothing_to_publish(history: Path, asv_results: Path | None, export: ExportReport) -> str:
    runs = f"no qbench runs in {history}"
    if export.skipped:
        runs = f"none of the {len(export.skipped)} qbench runs in {history} can be shown (e.g. {export.skipped[0]})"
    return f"nothing to publish: {runs}" + (f", and no asv results in {asv_results}" if asv_results else "")


def _check_html_target(html: Path, protected: list[Path]) -> None:
    """`asv publish` deletes its output folder first: never let that be, or contain, anything but a dashboard."""
    for path in protected:
        if html == path or html in path.parents:
            raise ConfigError(f"--html {html} would delete {path}; choose a folder of its own")
    if html.is_dir() and any(html.iterdir()) and not (html / "index.json").is_file():
        raise ConfigError(f"--html {html} is a non-empty folder that is not an asv dashboard; choose another")


def _run_asv_publish(config: Path) -> None:
    command = [sys.executable, "-m", "qbench.report.asv_main", "publish", "--config", str(config)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PUBLISH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InfraError(f"asv publish took longer than {PUBLISH_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise InfraError(f"asv publish failed (exit {done.returncode}): {lines[-1]}")


def _add_script(html: Path, script: Path) -> None:
    """Copy `script` next to index.html and load it after asv's own scripts."""
    shutil.copy2(script, html / script.name)
    index = html / "index.html"
    page = index.read_text()
    if "</head>" not in page:
        raise InfraError(f"{index}: no </head> to load {script.name} before; not the asv page qbench knows")
    index.write_text(page.replace("</head>", f'<script src="{script.name}"></script>\n  </head>', 1))


def _manifest() -> dict:
    try:
        return json.loads((VENDOR_DIR / "MANIFEST.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InfraError(f"{VENDOR_DIR / 'MANIFEST.json'}: cannot read the vendored files' manifest: {exc}") from None


def vendor_dashboard(html: Path | str) -> list[str]:
    """Copy the pinned files into <html>/vendor (checking each sha256), point index.html's CDN scripts and styles at
    them and drop their integrity attributes (the copies are not all byte-identical to the CDN's, e.g. flot is
    unminified). Returns the package@version list. An external URL the manifest does not cover is an error: a
    dashboard that would silently need the internet is worse than none."""
    html = Path(html)
    manifest = _manifest()
    replacements = {}
    for package in manifest["packages"]:
        for item in package["files"]:
            _copy_verified(VENDOR_DIR / item["path"], html / "vendor" / item["path"], item["sha256"])
            replacements[item["replaces"]] = f"vendor/{item['path']}"
        shutil.copy2(VENDOR_DIR / package["license_file"], _make_parent(html / "vendor" / package["license_file"]))
    shutil.copy2(VENDOR_DIR / "MANIFEST.json", html / "vendor" / "MANIFEST.json")
    index = html / "index.html"
    index.write_text(_LOADING_TAG.sub(lambda tag: _rewrite_tag(tag.group(0), replacements), index.read_text()))
    return [f"{p['package']}@{p['version']}" for p in manifest["packages"]]


def _rewrite_tag(tag: str, replacements: dict[str, str]) -> str:
    found = _EXTERNAL_URL.search(tag)
    if found is None:
        return tag
    url = found.group(2)
    if url not in replacements:
        raise InfraError(f"asv's index.html loads {url}, which qbench/report/vendor does not provide; "
                         f"this asv is newer than qbench's vendored files")
    tag = tag.replace(found.group(0), f'{found.group(1)}="{replacements[url]}"')
    return _CDN_ONLY_ATTRIBUTES.sub("", tag)


def _copy_verified(source: Path, target: Path, sha256: str) -> None:
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InfraError(f"{source}: vendored file missing ({exc.strerror}); reinstall qbench") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InfraError(f"{source}: sha256 differs from MANIFEST.json; the vendored file was altered")
    _make_parent(target).write_bytes(data)


def _make_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
