"""qbench.runner.reuse: the fp32 parent's logits once per model and the deterministic figures (size, traffic) once
per model, mode, engine and qconfig (traffic per batch too), from a store with the artifact cache's safety; a
record names what it reused, and --no-cache measures everything. End to end: a repeated run reuses, and the reused
figures equal the measured ones."""

import dataclasses

import pytest

from qbench.history.store import iter_records
from qbench.records import AccuracySpec, Case
from qbench.runner.artifacts import ArtifactCache
from qbench.runner.probes.accuracy import evaluate_case
from qbench.runner.reuse import Reuse
from tests.factories import qbench, tiny_suite_text
from tests.torch_factories import _TinySource, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
VERSIONS = {"torch": "2.13.0", "torchvision": "0.28.0", "torchao": "0.18.0"}
CASE = Case(model="tiny", mode="static_fx", engine="x86", batch_size=1, threads=1)


class Source(_TinySource):
    def __init__(self):
        self.built = 0

    def weights_info(self):
        return {"kind": "random", "name": None, "file": None, "sha256": None}

    def float_model(self):
        self.built += 1
        return tiny_model(0)


def _reuse(tmp_path, case=CASE, source=None, enabled=True):
    store = ArtifactCache(tmp_path / "reuse") if enabled else None
    return Reuse(case, source or Source(), store, versions=VERSIONS)


def test_a_figure_is_computed_once_then_reused_under_a_key_naming_what_it_depends_on(tmp_path):
    calls = []
    first = _reuse(tmp_path)
    assert first.figure("size", lambda: calls.append(1) or {"bytes": 10}) == {"bytes": 10}
    assert first.details()["reuse"]["stored"].keys() == {"size"} and "reused" not in first.details()
    again = _reuse(tmp_path, case=dataclasses.replace(CASE, batch_size=8))  # size does not depend on the batch
    assert again.figure("size", lambda: calls.append(2) or {"bytes": 99}) == {"bytes": 10}
    assert again.details()["reused"] == {"size": first.stored["size"]} and calls == [1]
    # traffic is keyed by the batch; another engine, qconfig or torch is another key
    assert again.figure("bandwidth", lambda: 8, batch_size=8) == 8
    assert _reuse(tmp_path).figure("bandwidth", lambda: 1, batch_size=1) == 1
    for other in (dataclasses.replace(CASE, engine="qnnpack"), dataclasses.replace(CASE, qconfig="default@qnnpack")):
        assert _reuse(tmp_path, case=other).figure("size", lambda: {"bytes": 5}) == {"bytes": 5}
    newer = Reuse(CASE, Source(), ArtifactCache(tmp_path / "reuse"), versions={**VERSIONS, "torch": "2.14.0"})
    assert newer.figure("size", lambda: {"bytes": 7}) == {"bytes": 7} and "reused" not in newer.details()


def test_disabled_reuse_measures_every_time_and_says_so(tmp_path):
    reuse = _reuse(tmp_path, enabled=False)
    assert reuse.figure("size", lambda: 1) == 1 and reuse.figure("size", lambda: 2) == 2
    assert reuse.details() == {"reuse": {"enabled": False, "stored": {}, "warnings": []}}


def test_a_damaged_entry_is_a_miss_with_a_warning(tmp_path):
    first = _reuse(tmp_path)
    first.figure("size", lambda: {"bytes": 10})
    for blob in (tmp_path / "reuse").glob("*.pt"):
        blob.write_bytes(b"not a tensor file")
    again = _reuse(tmp_path)
    assert again.figure("size", lambda: {"bytes": 11}) == {"bytes": 11}
    assert "reused" not in again.details() and again.details()["reuse"]["warnings"]


def test_reference_logits_come_from_the_store_and_give_the_same_accuracy(tmp_path):
    spec, model = AccuracySpec(images=12, batch_size=5), tiny_model(1)
    source = Source()
    rebuilt = evaluate_case(model, source.float_model(), spec, source, engine=None)
    results = []
    for _ in range(2):
        source = Source()
        reuse = _reuse(tmp_path, source=source)
        results.append(evaluate_case(model, None, spec, source, engine=None,
                                     reference_logits=lambda eval_set: reuse.reference_logits(eval_set, 5)))
        results.append((source.built, reuse.details()))
    (first, (built_first, details_first)), (second, (built_second, details_second)) = results[:2], results[2:]
    assert first == second == rebuilt
    assert built_first == 1 and built_second == 0  # the parent is built once per model
    assert "reused" not in details_first and details_second["reused"].keys() == {"reference_logits"}
    # another evaluation set (more images) is another key
    other = _reuse(tmp_path, source=Source())
    evaluate_case(model, None, AccuracySpec(images=6, batch_size=5), other.source, engine=None,
                  reference_logits=lambda eval_set: other.reference_logits(eval_set, 5))
    assert other.source.built == 1


def test_the_fp32_cases_own_logits_are_its_childrens_reference_logits(tmp_path):
    """The fp32 case evaluates its model once: its accuracy is the same as evaluated alone, the logits are stored as
    the reference logits, and an int8 case then reuses them (its accuracy equals the one against a rebuilt parent)
    without building the parent."""
    spec, int8 = AccuracySpec(images=12, batch_size=5), tiny_model(1)
    fp32_case = dataclasses.replace(CASE, mode="fp32", engine=None)
    parent = Source().float_model()
    alone = evaluate_case(parent, None, spec, Source(), engine=None)
    fp32_reuse = _reuse(tmp_path, case=fp32_case)
    via_store = evaluate_case(parent, None, spec, fp32_reuse.source, engine=None,
                              own_logits=lambda eval_set: fp32_reuse.reference_logits(eval_set, 5, model=parent))
    assert via_store == alone and fp32_reuse.source.built == 0
    assert fp32_reuse.details()["reuse"]["stored"].keys() == {"reference_logits"}
    child = _reuse(tmp_path)
    against_store = evaluate_case(int8, None, spec, child.source, engine=None,
                                  reference_logits=lambda eval_set: child.reference_logits(eval_set, 5))
    assert against_store == evaluate_case(int8, Source().float_model(), spec, Source(), engine=None)
    assert child.source.built == 0
    assert child.details()["reused"] == {"reference_logits": fp32_reuse.stored["reference_logits"]}
    with pytest.raises(ValueError, match="without a reference"):
        evaluate_case(int8, parent, spec, Source(), engine=None, own_logits=lambda eval_set: None)


SUITE = tiny_suite_text(modes=("fp32", "static_fx"), engines=("x86",))
SUITE += """
[accuracy]
images = 8
batch_size = 4
"""


def test_a_repeated_run_reuses_and_its_records_say_so(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    done = qbench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--cache-dir",
                  str(tmp_path / "cache"), "--repeat", "2", "--no-peaks", "--no-progress")
    assert done.returncode == 0, done.stderr
    records = {(r.case.mode, r.worker["repeat"]): r for _, r in iter_records(tmp_path / "r", errors=[])}
    first, second = records[("static_fx", 0)], records[("static_fx", 1)]
    parent = records[("fp32", 0)]
    assert "reused" not in parent.details and parent.details["reuse"]["stored"].keys() == {
        "size", "bandwidth", "reference_logits", "accuracy"}
    assert "reference_logits" in parent.details["phases_s"]
    # the fp32 case's own logits serve as its int8 child's reference: the parent is not evaluated again
    assert first.details["reused"] == {"reference_logits": parent.details["reuse"]["stored"]["reference_logits"]}
    assert first.details["reuse"]["stored"].keys() == {"size", "bandwidth", "accuracy"}
    stored = first.details["reuse"]["stored"]
    # the accuracy figure is reused whole, so the parent's logits are not even needed
    assert second.details["reused"] == {k: stored[k] for k in ("size", "bandwidth", "accuracy")}
    for metric in ("size", "bandwidth"):
        assert second.metrics[metric] == first.metrics[metric]
    assert second.metrics["accuracy"] == first.metrics["accuracy"]
    assert second.details["reuse"]["stored"] == {}
    phases = first.details["phases_s"]
    assert {"probe", "open_model", "build", "size", "latency", "traffic", "accuracy",
            "total"} <= phases.keys() and "reference_logits" not in second.details["phases_s"]
    assert set(first.details["phases_nested"]["build"]) <= phases.keys()
    fp32 = records[("fp32", 1)]
    assert fp32.details["reused"].keys() == {"size", "bandwidth", "accuracy"}

    cold = qbench("run", "--suite", str(suite), "--results", str(tmp_path / "n"), "--cache-dir",
                  str(tmp_path / "cache"), "--no-cache", "--no-peaks", "--no-progress")
    assert cold.returncode == 0, cold.stderr
    for _, record in iter_records(tmp_path / "n", errors=[]):
        assert "reused" not in record.details and record.details["reuse"]["enabled"] is False


def test_the_key_changes_with_qbench_worker_code(tmp_path, monkeypatch):
    import qbench.runner.reuse as reuse_module

    _reuse(tmp_path).figure("size", lambda: {"bytes": 10})
    monkeypatch.setattr(reuse_module, "worker_code_sha256", lambda: "0" * 64)
    changed = _reuse(tmp_path)
    assert changed.figure("size", lambda: {"bytes": 12}) == {"bytes": 12} and "reused" not in changed.details()


def test_clearing_the_artifact_cache_clears_the_reuse_store(tmp_path):
    from qbench.launch.artifact_cache import ArtifactFolder

    _reuse(tmp_path).figure("size", lambda: {"bytes": 10})
    assert ArtifactFolder(tmp_path).clear() == 1 and not list((tmp_path / "reuse").glob("*.pt"))


def test_the_run_summary_says_what_was_reused():
    from qbench.report.summary import render_summary, reuse_line
    from tests.factories import make_record

    plain = make_record(details={})
    reused = make_record(details={"reused": {"size": "a" * 64, "accuracy": "b" * 64}})
    assert reuse_line([plain]) is None and "reused" not in render_summary([plain])
    assert reuse_line([plain, reused]) == (
        "reused    1 of 2 processes took figures from the reuse store (accuracy 1, size 1; details.reused names the "
        "keys, --no-cache measures everything)")
