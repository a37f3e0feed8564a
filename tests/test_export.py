"""`qbench export --format oss-v3`: real run files as PyTorch OSS benchmark database records (schema v3), checked
against that schema's columns and required fields (tests/fixtures/oss_benchmark_v3.schema.json), with every field of
a record's identity and provenance recoverable from the export, and failed or skipped cases counted, not exported."""

import json
import shutil
from pathlib import Path

import jsonschema

from qbench.cli import main
from qbench.history.columnar import compact
from qbench.history.store import read_run_file, run_files
from qbench.metrics import METRICS
from qbench.records import Case
from qbench.report.oss_benchmark import run_to_records
from tests.factories import make_case, make_record, one_line_error, qbench, write_run

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "records" / "avx2-amd-epyc-zen3"
SCHEMA = json.loads((FIXTURES / "oss_benchmark_v3.schema.json").read_text())


def exported(folder: Path) -> dict[str, list[dict]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def decoded(extra: dict) -> dict:
    """An extra_info map back to values: strings that are JSON are decoded, other strings stay."""
    def one(text):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return {key: one(value) for key, value in extra.items()}


def test_real_runs_export_as_valid_v3_records_one_per_metric(tmp_path):
    done = qbench("export", "--results", str(REAL), "--out", str(tmp_path / "oss"))
    assert done.returncode == 0, done.stderr
    runs = {p.name.split(".jsonl")[0]: read_run_file(p) for p in run_files(REAL)}
    files = exported(tmp_path / "oss")
    assert set(files) == {f"{stem}.json" for stem in runs}
    validator = jsonschema.Draft202012Validator(SCHEMA)
    total = 0
    for name, records in files.items():
        run = runs[name[:-len(".json")]]
        expected = sum(1 for r in run.records for m in METRICS.values() if m.extract(r) is not None)
        assert len(records) == expected > 0
        total += len(records)
        for record in records:
            errors = sorted(validator.iter_errors(record), key=str)
            assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}"
    assert done.stdout.strip() == (f"exported 3 runs into {tmp_path / 'oss'}: {total} metric records from "
                                   f"{sum(len(r.records) for r in runs.values())} ok records")


def test_the_schema_rejects_records_without_what_it_requires():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    good = {"benchmark": {"name": "b"}, "model": {"name": "m"}, "metric": {"name": "x", "benchmark_values": [1.0]}}
    assert validator.is_valid(good)
    for broken in ({**good, "metric": {"name": "x"}}, {**good, "model": {"type": "t"}},
                   {**good, "benchmark": {"name": "b", "extra_info": {"n": 1}}}, {**good, "extra": 1},
                   {**good, "runners": [{"cpu_count": -1}]}):
        assert not validator.is_valid(broken), broken


def test_every_field_of_identity_and_provenance_is_in_the_export():
    (path,) = [p for p in run_files(REAL) if "39fadfe2" in p.name]
    run = read_run_file(path)
    records, counts = run_to_records(run)
    records = list(records)
    by_record = {}
    for item in records:
        by_record.setdefault(item["benchmark"]["extra_info"]["record_id"], []).append(item)
    assert set(by_record) == {r.record_id for r in run.records}
    for record in run.records:
        items = by_record[record.record_id]
        first = items[0]
        bench = decoded(first["benchmark"]["extra_info"])
        case = Case.from_dict({key: bench[key] for key in record.case.to_dict()})
        assert case == record.case and bench["case_version"] == record.case.case_version
        assert bench["case_id"] == record.case_id and first["benchmark"]["dtype"] == record.case.mode
        assert bench["suite"] == record.suite and bench["run_id"] == record.run_id
        assert {k: bench[f"details.{k}"] for k in record.details} == record.details  # kernels, weights, qconfig...
        assert first["model"]["name"] == record.case.model
        assert first["model"].get("backend") == record.case.engine
        (runner,) = first["runners"]
        machine = decoded(runner["extra_info"])
        assert {k: machine[k] for k in record.machine} == record.machine
        environment = {k[len("environment."):]: v for k, v in machine.items() if k.startswith("environment.")}
        deps = first["dependencies"]
        versions = {"torch": deps["pytorch"]["version"], "torch_git": deps["pytorch"]["sha"],
                    "torchvision": deps["torchvision"]["version"], "torchao": deps["torchao"]["version"],
                    "numpy": deps["numpy"]["version"], "python": deps["python"]["version"]}
        assert {**environment, **versions} == record.environment
        assert deps["qbench"]["sha"] == record.qbench["commit"]
        assert runner["cpu_count"] == record.machine["logical_cpus"] and runner["type"] == record.machine["machine_id"]
        latency = next(i for i in items if i["metric"]["name"] == "latency(ms)")
        assert latency["metric"]["benchmark_values"] == [s * 1e3 for s in record.metrics["latency"]["samples"]]
        assert all(i["benchmark"] == first["benchmark"] and i["runners"] == first["runners"] for i in items)
    assert counts == {"ok": 108}


def test_failed_and_skipped_cases_are_counted_not_exported(tmp_path):
    records = [make_record(make_case(model="resnet18")), make_record(make_case(model="resnet50"), status="failed"),
               make_record(make_case(model="mobilenet_v2"), status="skipped"),
               make_record(make_case(model="googlenet", mode="fp32", engine=None, runner="avx2"))]
    write_run(tmp_path / "results", records, stamp=True)
    assert main(["export", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "oss")]) == 0
    ((name, items),) = exported(tmp_path / "oss").items()
    assert {i["model"]["name"] for i in items} == {"resnet18", "googlenet"}
    assert {json.loads(i["benchmark"]["extra_info"]["run_counts"]) == {"ok": 2, "failed": 1, "skipped": 1}
            for i in items} == {True}
    fp32 = [i for i in items if i["model"]["name"] == "googlenet"]
    assert "backend" not in fp32[0]["model"] and fp32[0]["runners"][0]["type"].endswith("@avx2")
    names = {i["metric"]["name"] for i in items}
    assert names == {"latency(ms)", "throughput(images/s)", "memory(MB)", "size(MB)"}


def test_export_summary_names_what_was_left_out(tmp_path, capsys):
    write_run(tmp_path / "results", [make_record(), make_record(status="timeout")], stamp=True)
    assert main(["export", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "oss")]) == 0
    assert capsys.readouterr().out.strip().endswith(
        "4 metric records from 1 ok records; no measurement, left out: 1 timeout")


def test_compacted_and_json_lines_runs_export_alike(tmp_path):
    shutil.copytree(REAL, tmp_path / "lines")
    shutil.copytree(REAL, tmp_path / "store")
    written, kept = compact(tmp_path / "store")
    assert len(written) == 3 and not kept
    for name in ("lines", "store"):
        assert main(["export", "--results", str(tmp_path / name), "--out", str(tmp_path / f"oss-{name}")]) == 0
    assert exported(tmp_path / "oss-lines") == exported(tmp_path / "oss-store")


def test_export_chooses_runs_like_compare(tmp_path):
    assert main(["export", "latest", "--results", str(REAL), "--out", str(tmp_path / "oss")]) == 0
    ((name, _),) = exported(tmp_path / "oss").items()
    newest = max(run_files(REAL), key=lambda p: read_run_file(p).header["started_at"])
    assert name == newest.name.replace(".jsonl", ".json")


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    done = qbench("export", "nosuchrun", "--results", str(REAL), "--out", str(tmp_path / "oss"))
    assert done.returncode == 2 and "unknown run, commit or folder 'nosuchrun'" in one_line_error(done)
    (tmp_path / "file").write_text("")
    done = qbench("export", "--results", str(REAL), "--out", str(tmp_path / "file"))
    assert done.returncode == 2
    assert one_line_error(done) == f"qbench: error: --out {tmp_path / 'file'} is a file; it must be a folder"
    assert not (tmp_path / "oss").exists()


def test_no_runs_is_exit_2_and_an_unreadable_run_is_named_and_exit_3(tmp_path):
    done = qbench("export", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "oss"))
    assert done.returncode == 2 and "no run files under" in one_line_error(done)
    shutil.copytree(REAL, tmp_path / "results")
    victim = run_files(tmp_path / "results")[0]
    victim.write_text("not json\n")
    done = qbench("export", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "oss"))
    assert done.returncode == 3
    assert one_line_error(done).startswith(f"qbench: error: {victim}")
    assert len(exported(tmp_path / "oss")) == 2  # the other runs are exported
