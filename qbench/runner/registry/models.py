"""The model registry: every torchvision classification model by name (the quantizable ones tagged so), plus a
user's own model named `package.module:factory`, and open_model(), which builds a model's variants (float,
quantizable, pre-quantized) under one weights choice.

One architecture per name, whatever the weights: a model is built with the constructor arguments its DEFAULT
torchvision weights imply (vit_h_14 at 518 px; googlenet and inception_v3 with transform_input), and auxiliary
classifier heads are always removed, so random, pretrained and checkpoint runs measure the same graph.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import fnmatch
import functools
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from qbench.errors import ConfigError, NotApplicable, RegistryError
from qbench.runner.registry.weights import (checkpoint_provenance, default_weights, load_checkpoint, load_pretrained,
                                     parse_weights, pretrained_provenance, random_provenance)
from qbench.runner.registry.torchvision_compat import import_torchvision

__all__ = ["DEFAULT_INPUT_SIZE", "ModelInfo", "list_models", "model_info", "open_model", "TorchvisionModel",
           "CustomModel"]

DEFAULT_INPUT_SIZE = 224
_QUANTIZED_PREFIX = "quantized_"
# Pre-1.0 DenseNet checkpoints name layers "norm.1"; torchvision's densenet.py renames them the same way on load.
_DENSENET_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model name. `builder` is "module:function" of the float builder."""

    name: str
    tags: tuple[str, ...]
    quantizable: bool
    input_size: int
    builder: str


def _input_size(weights) -> int:
    try:
        return int(weights.transforms().crop_size[0])
    except (AttributeError, IndexError, TypeError):
        return DEFAULT_INPUT_SIZE


@functools.lru_cache(maxsize=None)
def _catalog() -> dict[str, ModelInfo]:
    models = import_torchvision().models
    quantizable = {name.removeprefix(_QUANTIZED_PREFIX)
                   for name in models.list_models(module=models.quantization)}
    catalog = {}
    for name in models.list_models(module=models):
        builder = models.get_model_builder(name)
        family = builder.__module__.rsplit(".", 1)[-1]
        tags = ("float",) + (("quantizable",) if name in quantizable else ()) + (family,)
        catalog[name] = ModelInfo(name=name, tags=tags, quantizable=name in quantizable,
                                  input_size=_input_size(default_weights(name)),
                                  builder=f"{builder.__module__}:{builder.__name__}")
    return catalog


def _as_tuple(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def list_models(include: str | Iterable[str] = ("*",), exclude: str | Iterable[str] = (),
                tags: str | Iterable[str] = ()) -> list[str]:
    """Sorted torchvision model names matching any `include` glob, no `exclude` glob, and carrying every tag."""
    include, exclude, tags = _as_tuple(include), _as_tuple(exclude), set(_as_tuple(tags))
    return sorted(name for name, info in _catalog().items()
                  if any(fnmatch.fnmatchcase(name, pattern) for pattern in include)
                  and not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)
                  and tags <= set(info.tags))


def model_info(name: str) -> ModelInfo:
    """The ModelInfo of a torchvision model name or of a `package.module:factory`; RegistryError if unknown."""
    if ":" in name:
        return _custom_info(name, _resolve_factory(name))
    catalog = _catalog()
    if name in catalog:
        return catalog[name]
    close = difflib.get_close_matches(name.removeprefix(_QUANTIZED_PREFIX), list(catalog), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "list them with qbench.runner.registry.models.list_models()"
    raise RegistryError(f"unknown model {name!r}: {hint} (a model of your own is named package.module:factory)")


def _resolve_factory(name: str) -> Callable:
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise RegistryError(f"model {name!r}: a model of your own is named package.module:factory")
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail in any way; it is one config error
        raise RegistryError(f"model {name!r}: cannot import {module_name}: "
                            f"{' '.join(f'{type(exc).__name__}: {exc}'.split())}") from None
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise RegistryError(f"model {name!r}: {module_name} has no attribute {attribute}")
    if not callable(target):
        raise RegistryError(f"model {name!r}: {module_name}.{attribute} is not callable")
    return target


def _custom_info(name: str, factory: Callable) -> ModelInfo:
    """A factory may declare its input side as `factory.input_size` or as its module's INPUT_SIZE."""
    module = importlib.import_module(name.partition(":")[0])
    size = getattr(factory, "input_size", None) or getattr(module, "INPUT_SIZE", None) or DEFAULT_INPUT_SIZE
    return ModelInfo(name=name, tags=("float", "custom"), quantizable=False, input_size=int(size), builder=name)


def open_model(name: str, weights: str = "random", seed: int = 0) -> TorchvisionModel | CustomModel:
    """A ModelSource for `name` under `weights` ("random", "pretrained" or "checkpoint:<path>"). Nothing is built
    or loaded until a variant is asked for."""
    info = model_info(name)
    kind, _ = parse_weights(weights)
    if ":" in name:
        if kind == "pretrained":
            raise ConfigError(f"model {name!r} has no pretrained weights; use 'random' or 'checkpoint:<path>'")
        return CustomModel(info, weights, seed)
    return TorchvisionModel(info, weights, seed)


# torch.nn.init's in-place initializers, which module constructors call on their fresh parameters.
_INITIALIZERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def _initializers_skipped():
    """torch.nn.init's initializers leave their tensor as it is (uninitialized memory) while a model is built whose
    every parameter and buffer a strict load_state_dict then overwrites: drawing weights only to replace them cost
    about 10 ms of CPU per million parameters (vit_l_32 2.75 s, resnet50 0.25 s)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALIZERS}
    for name in saved:
        setattr(torch.nn.init, name, _left_as_is)
    try:
        yield
    finally:
        for name, initializer in saved.items():
            setattr(torch.nn.init, name, initializer)


def _left_as_is(tensor, *args, **kwargs):
    return tensor


def _seeded(seed: int, build: Callable[[], torch.nn.Module], loaded: bool = False) -> torch.nn.Module:
    """Build under torch.manual_seed(seed) without disturbing the caller's random state; `loaded`: every weight is
    loaded afterwards (strictly), so the initializers are skipped."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with _initializers_skipped() if loaded else contextlib.nullcontext():
            return build()


def _drop_aux_heads(model: torch.nn.Module) -> None:
    """GoogLeNet/Inception auxiliary classifiers: unused in eval, removed as torchvision does for pretrained."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for attribute in ("aux1", "aux2", "AuxLogits"):
            if attribute in model._modules:
                setattr(model, attribute, None)


def _load_into(model: torch.nn.Module, state_dict: dict, name: str, source: str) -> None:
    """Strict load, ignoring entries of submodules the model has removed (auxiliary heads). The per-module
    `_metadata` (state_dict versions) is kept: quantized modules read old layouts without it."""
    metadata = getattr(state_dict, "_metadata", None)
    state_dict = collections.OrderedDict((key, value) for key, value in state_dict.items()
                                         if model._modules.get(key.split(".", 1)[0], True) is not None)
    if metadata is not None:
        state_dict._metadata = metadata
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        raise ConfigError(f"{source} does not fit {name}: {text[:300]}") from None


def _fix_legacy_keys(family: str, state_dict: dict) -> dict:
    if family != "densenet":
        return state_dict
    fixed = {}
    for key, value in state_dict.items():
        match = _DENSENET_LEGACY_KEY.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def _is_quantized(state_dict: dict) -> bool:
    return any(isinstance(value, torch.Tensor) and value.is_quantized for value in state_dict.values())


class _Source:
    """Shared by both kinds of ModelSource: the weights choice, its loading and its provenance."""

    def __init__(self, info: ModelInfo, weights: str, seed: int):
        self.info = info
        self.name = info.name
        self.quantizable = info.quantizable
        self.input_size = info.input_size
        self.weights = weights
        self.weights_kind, self.checkpoint = parse_weights(weights)
        self.seed = seed
        self._provenance: dict | None = None

    def _family(self) -> str:
        return self.info.tags[-1]

    def _float_weights(self) -> tuple[dict | None, dict]:
        if self.weights_kind == "checkpoint":
            return load_checkpoint(self.checkpoint)
        if self.weights_kind == "pretrained":
            return load_pretrained(default_weights(self.name))
        return None, random_provenance()

    def _build_float(self) -> torch.nn.Module:
        raise NotImplementedError

    def float_model(self) -> torch.nn.Module:
        state_dict, provenance = self._float_weights()
        model = _seeded(self.seed, self._build_float, loaded=state_dict is not None)
        _drop_aux_heads(model)
        if state_dict is not None:
            _load_into(model, _fix_legacy_keys(self._family(), state_dict), self.name,
                       provenance["name"] or provenance["file"])
        self._provenance = provenance
        return model.eval()

    def _not_quantizable(self) -> NotApplicable:
        return NotApplicable(f"{self.name} has no quantizable variant in torchvision.models.quantization")

    def quantizable_model(self) -> torch.nn.Module:
        raise self._not_quantizable()

    def prequantized_model(self, engine: str) -> torch.nn.Module:
        raise self._not_quantizable()

    def weights_info(self) -> dict:
        """Provenance of the weights the last built variant was loaded from; before any build, of the weights
        float_model() would load."""
        if self._provenance is not None:
            return dict(self._provenance)
        if self.weights_kind == "checkpoint":
            return checkpoint_provenance(self.checkpoint)
        if self.weights_kind == "pretrained":
            return pretrained_provenance(default_weights(self.name))
        return random_provenance()


# The backends torchvision's quantize=True builders know (torchvision.models.quantization.utils.quantize_model).
_TORCHVISION_BACKENDS = ("fbgemm", "qnnpack")


class TorchvisionModel(_Source):
    """A torchvision classification model (ModelSource)."""

    def _arch_kwargs(self, weights) -> dict:
        kwargs = {"num_classes": len(weights.meta["categories"])}
        family = self._family()
        if family in ("googlenet", "inception"):
            kwargs.update(transform_input=True, aux_logits=True, init_weights=self.weights_kind == "random")
        elif family == "vision_transformer":
            kwargs["image_size"] = weights.meta["min_size"][0]
        elif family == "maxvit":
            kwargs["input_size"] = weights.meta["min_size"]
        return kwargs

    def _build_float(self) -> torch.nn.Module:
        builder = import_torchvision().models.get_model_builder(self.name)
        return builder(weights=None, **self._arch_kwargs(default_weights(self.name)))

    def _quantized_builder(self) -> Callable:
        if not self.quantizable:
            raise self._not_quantizable()
        return import_torchvision().models.get_model_builder(_QUANTIZED_PREFIX + self.name)

    def quantizable_model(self) -> torch.nn.Module:
        builder = self._quantized_builder()
        float_state = self.float_model().state_dict()
        kwargs = self._arch_kwargs(default_weights(self.name))
        model = _seeded(self.seed, lambda: builder(weights=None, quantize=False, **kwargs), loaded=True)
        _drop_aux_heads(model)
        _load_into(model, float_state, self.name, "the float model's weights")
        return model.eval()

    def _prequantized_weights(self, qweights) -> tuple[dict | None, dict]:
        if self.weights_kind == "pretrained":
            state_dict, provenance = load_pretrained(qweights)
            return state_dict, {**provenance, "backend": qweights.meta["backend"]}
        if self.weights_kind == "checkpoint":
            state_dict, provenance = load_checkpoint(self.checkpoint)
            if not _is_quantized(state_dict):
                raise NotApplicable(f"checkpoint {self.checkpoint} holds float weights; the prequantized mode needs "
                                    f"a quantized state_dict")
            return state_dict, provenance
        return None, random_provenance()

    def prequantized_model(self, engine: str) -> torch.nn.Module:
        """Built by torchvision (quantize=True) for the backend its released weights use (fbgemm, or qnnpack for
        the MobileNets: that fixes per-channel vs per-tensor weights), then loaded under `engine`, which repacks
        every weight for `engine`. torchvision's own backend="x86" would leave the model unquantized. Where that
        backend cannot pack weights at all (fbgemm on aarch64: "unknown architecure"), the skeleton is built for
        one that can (the case's engine when torchvision knows it, else qnnpack) and the released weights, which
        carry their own per-channel scales, are loaded into it (`provenance["built_for"]` says so)."""
        from qbench.runner.registry.engines import probe_engine

        builder = self._quantized_builder()
        if engine not in torch.backends.quantized.supported_engines:
            raise NotApplicable(f"engine {engine} is not supported by this torch build "
                                f"({', '.join(torch.backends.quantized.supported_engines)})")
        qweights = default_weights(_QUANTIZED_PREFIX + self.name)
        state_dict, provenance = self._prequantized_weights(qweights)
        backend = qweights.meta["backend"]
        broken = probe_engine(backend) if backend != engine else None
        if broken:
            backend = engine if engine in _TORCHVISION_BACKENDS else "qnnpack"
            provenance = {**provenance, "built_for": backend,
                          "built_for_why": f"{qweights.meta['backend']} cannot pack here ({broken})"}
        kwargs = {**self._arch_kwargs(qweights), "backend": backend}
        previous = torch.backends.quantized.engine
        try:
            model = _seeded(self.seed, lambda: builder(weights=None, quantize=True, **kwargs))
            _drop_aux_heads(model)
            torch.backends.quantized.engine = engine
            _load_into(model, model.state_dict() if state_dict is None else state_dict, self.name,
                       provenance["name"] or provenance["file"] or "its own weights")
        except BaseException:
            torch.backends.quantized.engine = previous
            raise
        torch.backends.quantized.engine = engine
        self._provenance = provenance
        return model.eval()


class CustomModel(_Source):
    """A user's model, `package.module:factory`: factory() is called with no arguments and must return an
    nn.Module. Float only; weights "random" (seeded factory call) or "checkpoint:<path>"."""

    def _build_float(self) -> torch.nn.Module:
        model = _resolve_factory(self.name)()
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model {self.name!r}: the factory returned {type(model).__name__}, "
                              f"not a torch.nn.Module")
        return model

    def _family(self) -> str:
        return "custom"
