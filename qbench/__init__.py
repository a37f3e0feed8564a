"""qbench: benchmark and regression-tracking harness for PyTorch quantization on CPUs.

The folders follow the data flow (docs/architecture.md): suite -> plan -> launch -> runner -> history -> compare -> report,
with cli/ as a thin edge and stats/ as pure numbers. `import qbench` never imports torch: only qbench.runner (the worker
process) does.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
