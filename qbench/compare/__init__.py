"""Stage 6: pairwise verdicts, threshold policy, step detection over history, claims."""
