"""Worker entry point that describes what this machine's torch and torchvision offer: every registered model
(with the facts enumeration needs) and which quantized engines really run a tiny quantized op."""

from __future__ import annotations

__all__ = ["probe"]


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
    return {
        "status": "ok",
        "catalog": {"models": models, "engines": probe_engines(tuple(task["engines"])),
                    "environment": collect_environment()},
        "errors": errors,
    }
