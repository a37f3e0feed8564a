"""A nightly-shaped setting on a machine without network: builds the learned resnet18 and its images
(tests/learned.py), packs the images as a named set with a full per-file manifest, declares the checkpoint as a
stand-in for torchvision's resnet18-f37072fd.pth, and serves both on 127.0.0.1 as the mirror, until interrupted.

    python -m tests.served_nightly --out build/issue11 [--port 8765] [--val-per-class 50]

writes into --out: learned/ (the learned set), manifests/learned-set.json (QBENCH_DATA_MANIFESTS), weights.json
(QBENCH_WEIGHTS_MANIFEST), env.sh (the variables to export: mirror, manifests, a fresh TORCH_HOME and data cache).
The set's splits: train (calibration), val (evaluation), low-contrast (the train images with their contrast around
the ImageNet mean colour cut to a tenth, i.e. the normalized inputs scaled by about 0.1, as tests/test_accuracy.py
does to tensors: calibrating on it gives activation ranges far too narrow, a badly calibrated int8 model). A second
start reuses the learned model and images already in --out.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

from PIL import Image

from tests.learned import WNIDS, Learned, build_learned, write_image_folder
from tests.served import Served

__all__ = ["build"]


MEAN_RGB = (124, 116, 104)  # the ImageNet mean, 0.485/0.456/0.406 of 255


def _low_contrast(train: Path, into: Path) -> None:
    for path in sorted(train.rglob("*.JPEG")):
        target = into / path.relative_to(train)
        target.parent.mkdir(parents=True, exist_ok=True)
        bands = Image.open(path).convert("RGB").split()
        Image.merge("RGB", [band.point(lambda v, m=m: round(m + (v - m) * 0.1)) for band, m in zip(bands, MEAN_RGB)]
                    ).save(target, quality=95)


def _pack(root: Path) -> tuple[bytes, dict[str, str]]:
    files, buffer = {}, io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
            archive.add(path, arcname=f"learned-set/{relative}")
    return buffer.getvalue(), files


def build(out: Path, val_per_class: int) -> tuple[dict[str, bytes], Path]:
    if (out / "learned" / "resnet18-learned.pth").is_file():
        learned = Learned(train=str(out / "learned" / "train"), val=str(out / "learned" / "val"),
                          checkpoint=str(out / "learned" / "resnet18-learned.pth"),
                          torch_home=str(out / "learned" / "torch_home"))
    else:
        learned = build_learned(str(out / "learned"))
        # more held-out images than the default 8 per class
        write_image_folder(learned.val, val_per_class, seed=2, wnids=WNIDS)
    val = Path(learned.val)
    tree = out / "learned-set"
    shutil.rmtree(tree, ignore_errors=True)
    for split, source in (("train", Path(learned.train)), ("val", val)):
        for path in source.rglob("*.JPEG"):
            target = tree / split / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    _low_contrast(tree / "train", tree / "low-contrast")
    archive, files = _pack(tree)
    manifests = out / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "learned-set.json").write_text(json.dumps({
        "format": "qbench-data-manifest/1", "name": "learned-set",
        "description": "tests/learned.py: six hue classes drawn procedurally, real ImageNet wnid folders",
        "licence": "generated test data", "labels": "wnid",
        "archive": {"url": "https://data.example.com/sets/learned-set.tgz",
                    "sha256": hashlib.sha256(archive).hexdigest(), "size": len(archive), "root": "learned-set"},
        "splits": {"train": "train", "val": "val", "low-contrast": "low-contrast"}, "files": files}, indent=1))
    checkpoint = Path(learned.checkpoint).read_bytes()
    (out / "weights.json").write_text(json.dumps({
        "format": "qbench-weights-manifest/1",
        "note": "the learned resnet18 of tests/learned.py stands in for torchvision's ResNet18_Weights.IMAGENET1K_V1",
        "files": {"resnet18-f37072fd.pth": {"sha256": hashlib.sha256(checkpoint).hexdigest()}}}, indent=1))
    served = {"/models/resnet18-f37072fd.pth": checkpoint, "/sets/learned-set.tgz": archive}
    return served, manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--val-per-class", type=int, default=50)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    files, manifests = build(out, args.val_per_class)
    server = Served(files, port=args.port)
    (out / "env.sh").write_text(
        f"export QBENCH_MIRROR={server.url}\nexport QBENCH_DATA_MANIFESTS={manifests}\n"
        f"export QBENCH_WEIGHTS_MANIFEST={out / 'weights.json'}\nexport TORCH_HOME={out / 'torch_home'}\n"
        f"export QBENCH_DATA_DIR={out / 'data'}\n")
    with server:
        print(f"serving {', '.join(files)} at {server.url}; variables in {out / 'env.sh'}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
