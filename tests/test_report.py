"""Reports: markdown and HTML with the run's numbers, provenance, plots, regressions, extra sections and the
results files that could not be read."""

import base64
import re
import statistics

import pytest

from qbench.report.document import markdown_to_html, write_report
from qbench.history.store import read_run_file
from tests.factories import (FP32, INT8, history, make_case, make_record, make_run, one_line_error, qbench,
                             write_history)

PNG = b"\x89PNG\r\n\x1a\n"
QNNPACK = make_case(mode="static_fx", engine="qnnpack")
EAGER = make_case(mode="static_eager", engine="x86")


def one_run():
    run = make_run(0, [(FP32, [0.040, 0.042, 0.044], 4_000_000), (INT8, [0.010, 0.011, 0.012], 1_000_000),
                       (QNNPACK, [0.080, 0.081, 0.082], 1_010_000)])
    skipped = make_record(EAGER, status="skipped", run_id=run.header["run_id"], reason="no quantizable variant")
    run.records.append(skipped)
    return run


def test_report_has_the_runs_numbers_provenance_and_plots(tmp_path):
    md_path, html_path = write_report(tmp_path, [one_run()])
    markdown = md_path.read_text()
    row = next(line for line in markdown.splitlines() if "| static_fx" in line and "x86" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:7] == ["resnet18", "static_fx", "x86", "1", "1", "1", "11"]
    assert cells[7:] == ["10.5–11.5", "1", "0.0002", "4.00", "3.82"]
    qnnpack = next(line for line in markdown.splitlines() if "qnnpack" in line and line.startswith("|"))
    assert "| 0.52 " in qnnpack and "| 3.96 " in qnnpack
    assert "RANDOM-INIT WEIGHTS" in markdown
    assert "torch 2.13.0+cpu, torchvision 0.28.0" in markdown
    assert "isa: avx2 avx512f; torch dispatches to AVX512" in markdown
    assert "skipped  resnet18/static_eager/x86/b1/t1/random: no quantizable variant" in markdown
    for name in ("latency.png", "size_ratio.png", "speedup.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
        assert f"]({name})" in markdown
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert re.search(r"<td[^>]*>static_fx</td>", page) and "<strong>RANDOM-INIT WEIGHTS" in page


def test_a_run_of_repeats_counts_each_case_once_by_its_median():
    run = make_run(0, [(FP32, [0.040] * 3, 4000), (FP32, [0.050] * 3, 4000), (FP32, [0.060] * 3, 4000),
                       (INT8, [0.010] * 3, 1000)])
    from qbench.report.document import case_frame, ratio_frame

    cases = case_frame(run.records)
    fp32 = cases[cases["mode"] == "fp32"].iloc[0]
    assert (fp32["n"], fp32["latency_s"]) == (3, pytest.approx(0.050))
    assert ratio_frame(cases).iloc[0]["speedup"] == pytest.approx(5.0)


def test_regressions_and_passed_in_sections_are_rendered(tmp_path):
    runs = history([0.010] * 7 + [0.012] * 5, torch_from=7)
    from qbench.compare.steps import find_regressions
    from qbench.history.series import build_series
    from tests.factories import pairs

    regressions = [r for r in find_regressions(build_series(pairs(*runs)), {}) if r.metric == "latency"]
    comparison = "| case | verdict |\n|---|---|\n| resnet18 | regressed |"
    md_path, html_path = write_report(tmp_path, [runs[-1]], regressions=regressions,
                                      sections=[("Comparison", comparison)])
    markdown = md_path.read_text()
    line = next(x for x in markdown.splitlines() if x.startswith("| latency"))
    assert "+20" in line and "torch 2.14.0.dev" in line and f"`{runs[7].records[0].qbench['commit'][:8]}`" in line
    assert "torch 2.13.0+cpu → 2.14.0.dev" in line
    assert "## Comparison\n\n| case | verdict |" in markdown
    assert re.search(r"<td[^>]*>regressed</td>", html_path.read_text())


def test_markdown_to_html_renders_what_reports_use():
    page = markdown_to_html("# T\n\n- a `x`\n- **b**\n\n| h | i |\n|:--|--:|\n| 1 | 2 |\n\n"
                            "```\ncode <x>\n```\n![plot](p.png)", {"p.png": PNG})
    assert "<h1>T</h1>" in page
    flat = re.sub(r">\s+<", "><", re.sub(r' style="[^"]*"', "", page))
    assert "<ul><li>a <code>x</code></li><li><strong>b</strong></li></ul>" in flat
    assert "<thead><tr><th>h</th><th>i</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody>" in flat
    assert "<pre><code>code &lt;x&gt;" in flat
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page


def test_report_cli_names_a_corrupt_file_exits_3_and_reports_the_rest(tmp_path):
    runs = history([0.010] * 9 + [0.013], fp32_levels=[0.04] * 10)
    bad = write_history(tmp_path / "results", runs, corrupt=True)
    section = tmp_path / "cmp.md"
    section.write_text("# Comparison with main\n\n| case | verdict |\n|---|---|\n| x | unchanged |\n")
    done = qbench("report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"),
                  "--section", str(section))
    assert done.returncode == 3
    assert str(bad) in one_line_error(done) and "corrupt line" in one_line_error(done)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"run {runs[-1].header['run_id'][:8]}" in markdown
    assert "## Unreadable results files" in markdown and str(bad) in markdown
    assert "## Comparison with main" in markdown and "| x | unchanged |" in markdown
    assert re.search(r"\| latency +\| resnet18/static_fx/x86/b1/t1/random \| \+\d\d\.\d%", markdown)
    assert "**(this run)**" in markdown
    assert (tmp_path / "out" / "latency.png").read_bytes().startswith(PNG)


def test_report_cli_unknown_run_is_bad_input_with_candidates(tmp_path):
    write_history(tmp_path, history([0.010] * 2))
    done = qbench("report", "--results", str(tmp_path), "--run", "nosuchrun", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "unknown run, commit or folder 'nosuchrun'" in one_line_error(done)
    assert "recent runs: 00010000 (t, " in one_line_error(done)
    assert not (tmp_path / "out").exists()


def test_report_cli_of_a_commits_runs_together(tmp_path):
    runs = history([0.010, 0.012, 0.011], fp32_levels=[0.04] * 3)
    write_history(tmp_path / "results", runs)
    commit = runs[1].records[0].qbench["commit"]
    done = qbench("report", "--results", str(tmp_path / "results"), "--run", commit[:10], "--out",
                  str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"commit {commit[:12]} (1 run)" in markdown
    (row,) = [line for line in markdown.splitlines() if line.startswith("| resnet18 | static_fx")]
    expected = statistics.median(runs[1].records[0].metrics["latency"]["samples"]) * 1e3
    assert f"| {expected:.4g} " in row


def test_report_of_a_real_run_file(tmp_path):
    write_history(tmp_path, [one_run()])
    (path,) = tmp_path.rglob("*.jsonl")
    md_path, _ = write_report(tmp_path / "out", [read_run_file(path)])
    assert "| resnet18 | static_fx | x86" in md_path.read_text()


def test_report_cli_includes_a_comparison_of_two_sides(tmp_path):
    runs = history([0.010] * 6 + [0.020] * 3, fp32_levels=[0.04] * 9)
    write_history(tmp_path / "results", runs)
    done = qbench("report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"),
                  "--compare", "latest~1", "latest")
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"## Comparison: latest~1 = run {runs[-2].header['run_id'][:8]}" in markdown
    assert "resnet18/static_fx/x86/b1/t1/random" in markdown.split("## Comparison")[1]


def test_a_run_holding_kernel_micro_benchmarks_still_reports(tmp_path):
    kernel = make_case(model="kernel:quantized_linear[linear-1x512-o1000]", mode="kernel", engine="x86")
    run = make_run(0, [(FP32, [0.040] * 3, 4000), (INT8, [0.010] * 3, 1000), (kernel, [2e-5] * 3, 0)])
    md_path, _ = write_report(tmp_path, [run])
    assert "kernel:quantized_linear[linear-1x512-o1000]" in md_path.read_text()
