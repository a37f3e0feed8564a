"""Resolving a comparison side: latest[~N], run ids and prefixes, commits and git refs, folders and files; unknown
and ambiguous sides are one-line errors naming candidates; an unreadable file is kept aside, never fatal."""

import subprocess

import pytest

from qbench.errors import ConfigError, StoreError
from qbench.history.sides import ResultsFolder, resolve_side
from tests.factories import make_record, write_run

COMMIT_A = "a1" * 20
COMMIT_B = "b2" * 20


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "results"
    write_run(root, 1, run_id="1111aaaa" + "0" * 24, started_at="2026-11-20T10:00:00.000000Z", commit=COMMIT_A,
              suite="quick")
    write_run(root, 2, run_id="2222bbbb" + "0" * 24, started_at="2026-11-21T10:00:00.000000Z", commit=COMMIT_A,
              suite="quick")
    write_run(root, 1, run_id="3333cccc" + "0" * 24, started_at="2026-11-22T10:00:00.000000Z", commit=COMMIT_B,
              suite="smoke")
    return root


def side(spec, root, cwd=None):
    return resolve_side(spec, ResultsFolder(root), cwd=cwd)


def run_ids(resolved):
    return [run.header["run_id"][:8] for run in resolved.runs]


def test_latest_and_latest_n_go_back_by_start_time(root):
    assert run_ids(side("latest", root)) == ["3333cccc"]
    assert run_ids(side("latest~0", root)) == ["3333cccc"]
    assert run_ids(side("latest~2", root)) == ["1111aaaa"]
    latest = side("latest~1", root)
    assert latest.kind == "latest" and latest.label.startswith("latest~1 = run 2222bbbb (quick, a1a1a1a1, 2026-11-21")
    assert len(latest.records) == 2


def test_latest_beyond_history_names_the_recent_runs(root):
    with pytest.raises(ConfigError) as error:
        side("latest~3", root)
    message = str(error.value)
    assert message.startswith("latest~3: there are only 3 complete runs under ")
    assert "recent runs: 3333cccc (smoke, b2b2b2b2, 2026-11-22 10:00); 2222bbbb (quick, a1a1a1a1" in message
    assert "\n" not in message


def test_latest_skips_a_run_still_being_written(root):
    write_run(root, 1, run_id="4444dddd" + "0" * 24, started_at="2026-11-23T10:00:00.000000Z", commit=COMMIT_B,
              suite="quick", finish=False)
    assert run_ids(side("latest", root)) == ["3333cccc"]
    assert run_ids(side("4444dd", root)) == ["4444dddd"]
    assert "incomplete" in side("4444dd", root).label


def test_run_id_full_and_unique_prefix(root):
    assert run_ids(side("2222bbbb" + "0" * 24, root)) == ["2222bbbb"]
    resolved = side("2222BB", root)
    assert resolved.kind == "run" and run_ids(resolved) == ["2222bbbb"]


def test_a_prefix_shorter_than_six_digits_is_not_a_run_id(root):
    with pytest.raises(ConfigError, match="unknown run, commit or folder '2222b'"):
        side("2222b", root, cwd=root)


def test_ambiguous_run_prefix_lists_the_matches(root):
    write_run(root, 1, run_id="2222bbbf" + "0" * 24, started_at="2026-11-19T10:00:00.000000Z", commit=COMMIT_B,
              suite="quick")
    with pytest.raises(ConfigError) as error:
        side("2222bb", root)
    assert str(error.value) == ("2222bb is ambiguous: 2 runs match: 2222bbbf (quick, b2b2b2b2, 2026-11-19 10:00); "
                                "2222bbbb (quick, a1a1a1a1, 2026-11-21 10:00)")


def test_commit_prefix_means_all_its_runs(root):
    resolved = side("a1a1a1", root)
    assert resolved.kind == "commit" and run_ids(resolved) == ["1111aaaa", "2222bbbb"]
    assert resolved.label == f"commit {COMMIT_A[:12]} (2 runs)"
    assert len(resolved.records) == 3


def test_ambiguous_commit_prefix(root):
    write_run(root, 1, run_id="5555eeee" + "0" * 24, started_at="2026-11-19T10:00:00.000000Z",
              commit="a1a1a1ff" + "0" * 32, suite="quick")
    with pytest.raises(ConfigError, match=r"a1a1a1 is ambiguous: commits a1a1a1a1a1a1, a1a1a1ff0000 match"):
        side("a1a1a1", root)


def test_prefix_of_both_a_run_and_a_commit_is_ambiguous(root):
    write_run(root, 1, run_id="b2b2b2" + "9" * 26, started_at="2026-11-19T10:00:00.000000Z", commit=COMMIT_A,
              suite="quick")
    with pytest.raises(ConfigError, match="b2b2b2 is ambiguous: it starts run b2b2b2"):
        side("b2b2b2", root)


def test_folder_means_every_run_under_it_and_a_file_one_run(root):
    folder = side(str(root), root)
    assert folder.kind == "folder" and len(folder.runs) == 3 and len(folder.records) == 4
    month = next(root.rglob("2026-11"))
    assert len(side(str(month), root).runs) == 3
    path = next(p for p in root.rglob("*.jsonl") if "3333cccc" in p.name)
    single = side(str(path), root)
    assert single.kind == "file" and run_ids(single) == ["3333cccc"]


def test_missing_folder_and_empty_folder_are_errors(root, tmp_path):
    with pytest.raises(ConfigError, match="is neither a run file nor a results folder"):
        side(str(tmp_path / "nowhere/"), root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no readable run files under"):
        side(str(tmp_path / "empty"), root)


def test_unknown_side_names_recent_runs(root, tmp_path):
    with pytest.raises(ConfigError) as error:
        side("deadbeef", root, cwd=tmp_path)
    message = str(error.value)
    assert message.startswith(f"unknown run, commit or folder 'deadbeef' under {root}; recent runs: 3333cccc (smoke")
    assert message.count("(") == 3 and "\n" not in message


def test_options_are_not_sides(root):
    with pytest.raises(ConfigError, match="a side must be a run id, commit, results folder or latest"):
        side("--output=x", root)


def test_no_history_says_so(tmp_path):
    with pytest.raises(ConfigError, match="recent runs: no runs under"):
        side("latest~0", tmp_path / "empty-results")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for message in ("first", "second"):
        (repo / "f.txt").write_text(message)
        git(repo, "add", "f.txt")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    git(repo, "tag", "v1", "HEAD~1")
    return repo


def test_git_refs_resolve_in_the_current_repository(tmp_path, repo):
    first, second = git(repo, "rev-parse", "HEAD~1"), git(repo, "rev-parse", "HEAD")
    root = tmp_path / "results"
    write_run(root, 1, run_id="1111aaaa" + "0" * 24, started_at="2026-11-20T10:00:00.000000Z", commit=first,
              suite="quick")
    write_run(root, 1, run_id="2222bbbb" + "0" * 24, started_at="2026-11-21T10:00:00.000000Z", commit=second,
              suite="quick")
    assert run_ids(side("HEAD~1", root, cwd=repo)) == ["1111aaaa"]
    assert run_ids(side("v1", root, cwd=repo)) == ["1111aaaa"]
    resolved = side("main", root, cwd=repo)
    assert resolved.kind == "commit" and run_ids(resolved) == ["2222bbbb"]


def test_git_ref_without_runs_is_an_error_naming_the_commit(tmp_path, repo):
    root = tmp_path / "results"
    write_run(root, 1, run_id="1111aaaa" + "0" * 24, started_at="2026-11-20T10:00:00.000000Z", commit=COMMIT_A,
              suite="quick")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(ConfigError, match=f"HEAD is commit {head[:12]}, which has no runs under .*; recent runs: "
                                          "1111aaaa"):
        side("HEAD", root, cwd=repo)


def test_an_unreadable_file_is_kept_aside_and_the_rest_resolves(root):
    bad = next(p for p in root.rglob("*.jsonl") if "2222bbbb" in p.name)
    bad.write_text(bad.read_text().replace('"kind": "case"', '"kind": "case', 1))
    history = ResultsFolder(root)
    assert len(history.errors) == 1 and str(bad) in str(history.errors[0])
    assert run_ids(resolve_side("latest~1", history)) == ["1111aaaa"]
    assert run_ids(resolve_side("a1a1a1", history)) == ["1111aaaa"]
    with pytest.raises(StoreError, match="corrupt line"):
        resolve_side(str(bad), history)
    assert len(history.errors) == 1


def test_a_record_the_store_refuses_is_named_by_its_file(root):
    path = next(p for p in root.rglob("*.jsonl") if "1111aaaa" in p.name)
    text = path.read_text()
    version = make_record().case.case_version
    path.write_text(text.replace(version, "0" * 16))
    history = ResultsFolder(root)
    (error,) = history.errors
    assert str(error).startswith(str(path)) and "case_version 0000000000000000 does not match" in str(error)
