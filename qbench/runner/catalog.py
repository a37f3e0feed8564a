"""Worker entry point that describes what this machine's torch and torchvision offer: every registered model
(with the facts enumeration needs), which quantized engines really run a tiny quantized op and, for the modes the
task names that need more than the engine (pt2e: a torchao quantizer for it), whether that is here."""

from __future__ import annotations

__all__ = ["probe", "probe_modes"]


def probe(task: dict) -> dict:
    from qbench.errors import RegistryError
    from qbench.runner.registry.engines import probe_engines
    from qbench.runner.registry.models import list_models, model_info
    from qbench.runner.environment import collect_environment

    models, errors = {}, []
    for name in list_models() + list(task.get("custom_models", [])):
        try:
            info = model_info(name)
        except RegistryError as exc:
            errors.append(str(exc))
            continue
        models[name] = {"quantizable": info.quantizable, "input_size": info.input_size, "tags": list(info.tags)}
    engines = probe_engines(tuple(task["engines"]))
    working = [engine for engine, reason in engines.items() if reason is None]
    return {
        "status": "ok",
        "catalog": {"models": models, "engines": engines, "environment": collect_environment(),
                    "modes": probe_modes(task.get("modes", ()), working)},
        "errors": errors,
    }


def probe_modes(modes, engines: list[str]) -> dict:
    """mode -> engine -> None when the mode can be built under the engine here, else the worker's own reason (the
    NotApplicable a case of it would record), for the modes in `modes` that need more than a working engine."""
    from qbench.errors import NotApplicable
    from qbench.runner.registry.pt2e import pt2e_quantizer

    found = {}
    if "pt2e" in modes:
        found["pt2e"] = {}
        for engine in engines:
            try:
                pt2e_quantizer(engine)
            except NotApplicable as exc:
                found["pt2e"][engine] = str(exc)
            else:
                found["pt2e"][engine] = None
    return found
