"""qbench: benchmark and regression-tracking harness for PyTorch quantization on CPUs.

`import qbench` never imports torch: the parent process plans, launches, stores and reports;
only worker processes (qbench.runner.worker and qbench.registry / qbench.probes) import torch.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
