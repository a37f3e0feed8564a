"""Torch-side probes, one metric per module; they run inside worker processes."""
