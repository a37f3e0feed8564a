"""qbench.launch.artifact_cache and `qbench cache`: keys, safe storage and bit-identical restores of real quantized models."""

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from qbench.launch import artifact_cache as cache_module
from qbench.launch.artifact_cache import (CACHEABLE_MODES, NOT_CACHEABLE, RECIPE_VERSION, artifact_key, cacheable,
                                         current_versions, default_root, describe_key)
from qbench.runner.artifacts import ArtifactCache, restore_into
from qbench.errors import ConfigError, StoreError
from qbench.records import MODES, CalibrationSpec, QatSpec, canonical_json
from qbench.runner.registry.modes import apply_mode
from tests import tiny_models
from tests.factories import ROOT, make_case, one_line_error


def qbench(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "qbench", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


VERSIONS = {"torch": "2.13.0+cpu", "torchvision": "0.28.0", "torchao": "0.18.0"}
RANDOM = {"kind": "random", "name": None, "file": None, "sha256": None}
SIDE = tiny_models.INPUT_SIZE


@pytest.fixture(autouse=True)
def restore_engine():
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


# --------------------------------------------------------------------------- a real quantizable model

class QuantizableConvNet(nn.Module):
    """tiny_models.convnet's layers with stubs and fuse_model(), shaped like torchvision's Quantizable* models."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.body = tiny_models.convnet()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))

    def fuse_model(self, is_qat=None):
        (tq.fuse_modules_qat if is_qat else tq.fuse_modules)(self.body, [["0", "1", "2"], ["3", "4"]], inplace=True)


class ConvNetSource:
    """A ModelSource over tiny_models.convnet with seeded weights and non-trivial batch-norm statistics."""

    name, quantizable, input_size = "convnet", True, SIDE

    def _state(self):
        torch.manual_seed(0)
        model = tiny_models.convnet()
        batch_norm = model[1]
        batch_norm.running_mean.uniform_(-0.2, 0.2)
        batch_norm.running_var.uniform_(0.5, 2.0)
        return model.state_dict()

    def float_model(self):
        model = tiny_models.convnet()
        model.load_state_dict(self._state())
        return model.eval()

    def quantizable_model(self):
        model = QuantizableConvNet()
        model.body.load_state_dict(self._state())
        return model.eval()

    def weights_info(self):
        return dict(RANDOM)


def _images(count, seed):
    return torch.rand(count, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


def _miss_then_hit(mode, engine, cache):
    """What the worker does: a miss runs the recipe on real calibration and puts its state; a hit rebuilds the
    converted skeleton from one example batch and restores the cached state into it."""
    calibration, example = [_images(4, 1), _images(4, 2)], _images(1, 3)
    case = make_case(model="convnet", mode=mode, engine=engine)
    key = artifact_key(case, weights_identity=RANDOM, calibration_identity="c" * 64, versions=VERSIONS)
    assert cache.get(key) is None
    missed = apply_mode(mode, ConvNetSource(), engine=engine, calibration=calibration, example_input=example).model
    cache.put(key, missed.state_dict(), {"case_id": case.case_id})
    cached = cache.get(key)
    assert cached is not None
    skeleton = apply_mode(mode, ConvNetSource(), engine=engine, calibration=[example], example_input=example).model
    return missed, skeleton, cached


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("mode", ["static_eager", "static_fx"])
def test_a_hit_restores_a_model_bit_identical_to_the_miss(mode, engine, tmp_path):
    missed, skeleton, cached = _miss_then_hit(mode, engine, ArtifactCache(tmp_path))
    x = _images(8, 4)
    with torch.inference_mode():
        expected, before = missed(x), skeleton(x)
    assert not torch.equal(before, expected)  # the skeleton's one-batch calibration really differs
    restore_into(skeleton, cached)
    with torch.inference_mode():
        assert torch.equal(skeleton(x), expected)
    quantized = [m for m in skeleton.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert quantized, "the restored model is a quantized one"


def _qat(steps, engine="x86"):
    """prepare_qat, `steps` SGD steps on random targets, convert: what a qat recipe does (0 steps for a skeleton)."""
    torch.backends.quantized.engine = engine
    model = ConvNetSource().quantizable_model().train()
    model.fuse_model(is_qat=True)
    model.qconfig = tq.get_default_qat_qconfig(engine)
    tq.prepare_qat(model, inplace=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    images = _images(4, 6)
    model(images)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tq.convert(model.eval(), inplace=False)


def test_a_qat_trained_model_restores_bit_identically_into_an_untrained_skeleton(tmp_path):
    cache = ArtifactCache(tmp_path)
    trained, skeleton = _qat(steps=5), _qat(steps=0)
    cache.put("e" * 64, trained.state_dict(), {})
    x = _images(8, 7)
    with torch.inference_mode():
        expected, before = trained(x), skeleton(x)
    assert not torch.equal(before, expected)
    restore_into(skeleton, cache.get("e" * 64))
    with torch.inference_mode():
        assert torch.equal(skeleton(x), expected)


def test_dynamic_packed_linear_params_survive_a_weights_only_round_trip(tmp_path):
    cache = ArtifactCache(tmp_path)
    model = apply_mode("dynamic", ConvNetSource(), engine="x86", calibration=[], example_input=_images(1, 0)).model
    key = "d" * 64
    cache.put(key, model.state_dict(), {})
    fresh = ConvNetSource().float_model()
    fresh[7].weight.data.zero_()
    fresh = tq.quantize_dynamic(fresh, {nn.Linear}, dtype=torch.qint8)
    x = _images(4, 5)
    with torch.inference_mode():
        assert not torch.equal(fresh(x), model(x))
        restore_into(fresh, cache.get(key))
        assert torch.equal(fresh(x), model(x))


def test_restore_into_names_what_does_not_fit(tmp_path):
    _, skeleton, cached = _miss_then_hit("static_fx", "x86", ArtifactCache(tmp_path))
    name = next(n for n, v in cached.items() if isinstance(v, torch.Tensor) and v.is_quantized)
    with pytest.raises(StoreError, match=f"missing {name}.*RECIPE_VERSION"):
        restore_into(skeleton, {k: v for k, v in cached.items() if k != name})
    with pytest.raises(StoreError, match="unexpected extra.weight"):
        restore_into(skeleton, {**cached, "extra.weight": torch.zeros(1)})
    with pytest.raises(StoreError, match=f"differing {name}"):
        restore_into(skeleton, {**cached, name: torch.zeros(3)})


# --------------------------------------------------------------------------- which modes

def test_cacheable_modes_are_those_that_calibrate_or_train_and_every_other_mode_says_why():
    assert [m for m in MODES if cacheable(m)] == ["static_eager", "static_fx", "qat"] == list(CACHEABLE_MODES)
    assert set(NOT_CACHEABLE) == set(MODES) - set(CACHEABLE_MODES)
    assert "literal" in NOT_CACHEABLE["pt2e"]


@pytest.mark.filterwarnings("ignore")
def test_pt2e_state_dict_does_not_carry_its_calibration():
    """Why pt2e is not cacheable: its activation scales live in the graph, not in the state_dict."""
    import torchao.quantization.pt2e.quantize_pt2e as pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    def quantized(calibration):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval()
        torch.manual_seed(0)
        for parameter in model.parameters():
            nn.init.uniform_(parameter, -0.3, 0.3)
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        prepared = pt2e.prepare_pt2e(torch.export.export(model, (calibration,)).module(), quantizer)
        prepared(calibration)
        return pt2e.convert_pt2e(prepared)

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    full, skeleton = quantized(x * 4), quantized(x)
    before = skeleton(x)
    skeleton.load_state_dict(full.state_dict(), strict=True)
    assert torch.equal(skeleton(x), before) and not torch.equal(full(x), before)


# --------------------------------------------------------------------------- keys

def _key(case=None, weights=RANDOM, calibration="c" * 64, versions=VERSIONS):
    return artifact_key(case or make_case(), weights_identity=weights, calibration_identity=calibration,
                        versions=versions)


def test_the_key_is_the_sha256_of_the_described_identity():
    case = make_case(qat=QatSpec(steps=3))
    description = describe_key(case, weights_identity=RANDOM, calibration_identity="c" * 64, versions=VERSIONS)
    assert _key(case) == hashlib.sha256(canonical_json(description).encode()).hexdigest()
    assert description == {
        "recipe_version": RECIPE_VERSION, "model": "resnet18", "weights": {"kind": "random", "seed": 0},
        "mode": "static_fx", "engine": "x86", "qconfig": "default", "runner": "native",
        "calibration": {"source": "synthetic", "batches": 2, "batch_size": 8, "seed": 0, "sha256": "c" * 64},
        "qat": QatSpec(steps=3).to_dict(), "versions": VERSIONS}


CHECKPOINT = {"kind": "checkpoint", "name": None, "file": "/a/w.pt", "sha256": "1" * 64}
KEY_CHANGES = {
    "torch version": dict(versions={**VERSIONS, "torch": "2.14.0+cpu"}),
    "torchvision version": dict(versions={**VERSIONS, "torchvision": "0.29.0"}),
    "torchao version": dict(versions={**VERSIONS, "torchao": None}),
    "a caller's own version entry": dict(versions={**VERSIONS, "recipes": 2}),
    "calibration identity": dict(calibration="e" * 64),
    "calibration spec": dict(case=make_case(calibration=CalibrationSpec(batches=4))),
    "qconfig": dict(case=make_case(qconfig="per_tensor")),
    "engine": dict(case=make_case(engine="qnnpack")),
    "mode": dict(case=make_case(mode="static_eager")),
    "model": dict(case=make_case(model="resnet50")),
    "runner": dict(case=make_case(runner="avx2")),
    "qat spec": dict(case=make_case(qat=QatSpec())),
    "random seed": dict(case=make_case(seed=1)),
    "checkpoint weights": dict(weights=CHECKPOINT),
    "checkpoint file content": dict(weights={**CHECKPOINT, "sha256": "2" * 64}),
    "pretrained weights": dict(weights={**CHECKPOINT, "kind": "pretrained", "name": "ResNet18_Weights.IMAGENET1K_V1"}),
}


def test_every_identity_field_changes_the_key_and_nothing_else_does(monkeypatch):
    base = _key()
    keys = {change: _key(**arguments) for change, arguments in KEY_CHANGES.items()}
    assert all(key != base for key in keys.values())
    assert len(set(keys.values())) == len(keys)
    # Batch size, threads and where a checkpoint file lies do not change a converted model.
    assert _key(make_case(batch_size=8, threads=2)) == base
    assert _key(weights={**CHECKPOINT, "file": "/elsewhere/w.pt"}) == keys["checkpoint weights"]
    # The identity calibration_batches returns keys as its sha256; versions left out count as absent.
    assert _key(calibration={"source": "synthetic", "images": 16, "sha256": "c" * 64}) == base
    assert _key(versions={"torch": VERSIONS["torch"]}) == _key(versions={**VERSIONS, "torchvision": None,
                                                                         "torchao": None})
    monkeypatch.setattr(cache_module, "RECIPE_VERSION", RECIPE_VERSION + 1)
    assert _key() != base


def test_keys_refuse_identities_that_cannot_tell_weights_or_versions_apart():
    with pytest.raises(ConfigError, match="sha256"):
        _key(weights={**CHECKPOINT, "sha256": None})
    with pytest.raises(ConfigError, match="torch version"):
        _key(versions={"torchvision": "0.28.0"})


def test_current_versions_are_the_installed_distributions():
    versions = current_versions()
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert set(versions) == {"torch", "torchvision", "torchao"}


def test_the_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QBENCH_CACHE_DIR", str(tmp_path / "mine"))
    assert ArtifactCache().root == tmp_path / "mine" == default_root()
    monkeypatch.delenv("QBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "qbench" / "artifacts"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "qbench" / "artifacts"


# --------------------------------------------------------------------------- storage

STATE = {"w": torch.quantize_per_tensor(torch.linspace(-1, 1, 12).reshape(3, 4), 0.01, 3, torch.qint8),
         "b": torch.arange(3.0)}


def _put(cache, key="a" * 64, meta=None):
    return cache.put(key, STATE, meta or {"case_id": "m/static_fx/x86/b1/t1/random"})


def _blob(cache, key="a" * 64):
    return cache.root / cache.info(key)["blob"]


def _plant(cache, payload: bytes, key="a" * 64):
    """Replace the entry's state file with `payload`, its sidecar updated to match, as a tamperer would."""
    _blob(cache, key).unlink()
    digest = hashlib.sha256(payload).hexdigest()
    sidecar = cache.root / f"{key}.json"
    blob = f"{key}.{digest[:16]}.pt"
    (cache.root / blob).write_bytes(payload)
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "sha256": digest, "blob": blob}))


def _age(cache, key, days):
    then = time.time() - days * 86400
    for path in cache.root.glob(f"{key}.*.pt"):
        os.utime(path, (then, then))


def _same(left, right):
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_put_get_round_trip_with_a_sidecar_and_no_leftovers(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = _put(cache)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path == tmp_path / f"{'a' * 64}.{digest[:16]}.pt"
    assert _same(cache.get("a" * 64), STATE)
    info = json.loads((tmp_path / f"{'a' * 64}.json").read_text())
    assert info["sha256"] == digest and info["blob"] == path.name and info["bytes"] == path.stat().st_size
    assert info["meta"] == {"case_id": "m/static_fx/x86/b1/t1/random"} and info["entries"] == 2
    assert {p.name for p in tmp_path.iterdir()} == {f"{'a' * 64}.json", path.name}
    assert cache.warnings == []


def test_a_key_that_is_not_a_sha256_is_refused_before_touching_files(tmp_path):
    with pytest.raises(ConfigError, match="not a 64-digit"):
        ArtifactCache(tmp_path).get("../../etc/passwd")


def test_a_state_that_weights_only_cannot_load_is_never_stored(tmp_path):
    cache = ArtifactCache(tmp_path)
    with pytest.raises(StoreError, match="weights_only"):
        cache.put("a" * 64, {"odd": threading.Lock}, {})
    with pytest.raises(ConfigError, match="not JSON"):
        cache.put("a" * 64, STATE, {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def _corrupt_state_file(cache):
    path = _blob(cache)
    path.write_bytes(path.read_bytes()[:100])


def _garbage_with_matching_hash(cache):
    _plant(cache, b"not a torch file")


def _corrupt_sidecar(cache):
    (cache.root / f"{'a' * 64}.json").write_text("{trunc")


def _sidecar_naming_another_file(cache):
    sidecar = cache.root / f"{'a' * 64}.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "blob": "../../elsewhere.pt"}))


def _missing_state_file(cache):
    _blob(cache).unlink()


@pytest.mark.parametrize("damage, why", [(_corrupt_state_file, "does not match its recorded sha256"),
                                         (_garbage_with_matching_hash, "torch.load"),
                                         (_corrupt_sidecar, "unreadable sidecar"),
                                         (_sidecar_naming_another_file, "unreadable sidecar"),
                                         (_missing_state_file, "state file missing")])
def test_a_damaged_entry_is_a_miss_that_is_removed_with_a_warning(tmp_path, damage, why):
    cache = ArtifactCache(tmp_path)
    _put(cache)
    damage(cache)
    assert cache.get("a" * 64) is None
    assert list(tmp_path.iterdir()) == []
    (warning,) = cache.warnings
    assert warning.startswith(f"artifact cache: entry {'a' * 12} discarded (") and why in warning
    _put(cache)
    assert _same(cache.get("a" * 64), STATE)


class _Payload:
    """Pickles as a call to exec: loading it without weights_only would run the code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_a_planted_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save({"w": _Payload(marker)}, evil)
    torch.load(evil, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.read_text() == "pwned"
    marker.unlink()

    cache = ArtifactCache(tmp_path / "cache")
    _put(cache)
    _plant(cache, evil.read_bytes())
    assert cache.get("a" * 64) is None
    assert not marker.exists()
    assert "weights_only" in cache.warnings[0] and not list(cache.root.iterdir())


def test_a_legacy_raw_pickle_is_refused_too(tmp_path):
    marker = tmp_path / "executed"
    cache = ArtifactCache(tmp_path / "cache")
    _put(cache)
    _plant(cache, pickle.dumps({"w": _Payload(marker)}, protocol=2))
    assert cache.get("a" * 64) is None and not marker.exists()


def test_entries_list_newest_use_first_and_flag_damage(tmp_path):
    cache = ArtifactCache(tmp_path)
    assert ArtifactCache(tmp_path / "absent").entries() == []
    _put(cache, "a" * 64, {"case_id": "first"})
    _put(cache, "b" * 64, {"case_id": "second"})
    (tmp_path / f"{'c' * 64}.{'0' * 16}.pt").write_bytes(b"orphan")
    _age(cache, "b" * 64, 3)
    _age(cache, "c" * 64, 1)
    entries = cache.entries()
    assert [e["key"][0] for e in entries] == ["a", "c", "b"]
    assert [e["meta"].get("case_id") for e in entries] == ["first", None, "second"]
    assert "error" in entries[1] and "error" not in entries[0]
    assert entries[0]["bytes"] == _blob(cache).stat().st_size and entries[0]["path"] == str(_blob(cache))
    cache.get("b" * 64)  # a hit counts as a use
    assert cache.entries()[0]["key"] == "b" * 64


def test_clear_all_or_only_entries_unused_for_long(tmp_path):
    cache = ArtifactCache(tmp_path)
    for letter in "abc":
        _put(cache, letter * 64)
    _age(cache, "b" * 64, 10)
    old = time.time() - 10 * 86400
    stale_tmp = tmp_path / ".tmp-killed.pt"
    stale_tmp.write_bytes(b"x")
    os.utime(stale_tmp, (old, old))
    assert cache.clear(older_than_s=5 * 86400) == 1
    assert sorted(e["key"][0] for e in cache.entries()) == ["a", "c"]
    assert not stale_tmp.exists()
    assert cache.clear() == 2 and list(tmp_path.iterdir()) == []
    assert ArtifactCache(tmp_path / "absent").clear() == 0
    with pytest.raises(ConfigError, match="non-negative"):
        cache.clear(-1)


def test_concurrent_writers_and_readers_never_see_half_an_entry(tmp_path):
    """Two writers racing on one key while a reader polls: every read is a miss or the whole state."""
    cache = ArtifactCache(tmp_path)
    reads, errors, done = [], [], threading.Event()

    def write():
        try:
            for _ in range(25):
                ArtifactCache(tmp_path).put("a" * 64, STATE, {"writer": threading.get_ident()})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read():
        while not done.is_set():
            reads.append(cache.get("a" * 64))

    writers = [threading.Thread(target=write) for _ in range(2)]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == [] and cache.warnings == []
    assert all(state is None or _same(state, STATE) for state in reads)
    assert any(state is not None for state in reads) or _same(cache.get("a" * 64), STATE)
    assert [p.name for p in tmp_path.glob("*.json")] == [f"{'a' * 64}.json"] and _blob(cache).exists()
    assert not list(tmp_path.glob(".tmp-*"))


# --------------------------------------------------------------------------- the command

def test_cli_list_info_and_clear(tmp_path):
    cache = ArtifactCache(tmp_path / "c")
    _put(cache, "ab" + "0" * 62, {"case_id": "resnet18/static_fx/x86/b1/t1/random"})
    _put(cache, "cd" + "0" * 62, {"identity": {"model": "resnet50", "mode": "static_eager", "engine": "qnnpack"}})
    env = {"QBENCH_CACHE_DIR": str(cache.root)}

    done = qbench("cache", "list", env_extra=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[0] in ("ab0000000000", "cd0000000000") and len(lines) == 3
    assert any(line.endswith("resnet18/static_fx/x86/b1/t1/random") for line in lines)
    assert any(line.endswith("resnet50/static_eager/qnnpack") for line in lines)
    assert lines[-1].startswith("2 entries,") and lines[-1].endswith(f"in {cache.root}")

    done = qbench("cache", "--cache-dir", str(cache.root), "list", "--json")
    assert sorted(json.loads(line)["key"][:2] for line in done.stdout.splitlines()) == ["ab", "cd"]

    done = qbench("cache", "info", "ab", env_extra=env)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["key"] == "ab" + "0" * 62 and info["meta"]["case_id"].startswith("resnet18")

    _age(cache, "cd" + "0" * 62, 8)
    done = qbench("cache", "clear", "--older-than", "7", env_extra=env)
    assert done.returncode == 0 and done.stdout.strip() == f"removed 1 entries not used for 7 days from {cache.root}"
    assert [e["key"][:2] for e in cache.entries()] == ["ab"]
    done = qbench("cache", "clear", env_extra=env)
    assert done.stdout.strip() == f"removed 1 entries from {cache.root}" and cache.entries() == []


@pytest.mark.parametrize("args, message", [
    (["info", "ff"], "cache key 'ff' matches no entry in"),
    (["clear", "--older-than", "-1"], "--older-than -1: expected a number of days >= 0"),
])
def test_cli_bad_input_is_a_one_line_error_with_exit_2(tmp_path, args, message):
    done = qbench("cache", "--cache-dir", str(tmp_path), *args)
    assert done.returncode == 2
    assert one_line_error(done).startswith(f"qbench: error: {message}")


def test_cli_ambiguous_prefix_and_missing_action_are_bad_input(tmp_path):
    cache = ArtifactCache(tmp_path)
    _put(cache, "ab" + "0" * 62)
    _put(cache, "ab" + "1" * 62)
    done = qbench("cache", "--cache-dir", str(tmp_path), "info", "ab")
    assert done.returncode == 2 and "2 entries" in one_line_error(done)
    assert qbench("cache").returncode == 2
