"""Pure numbers on samples: summaries, significance, paired ratios, accuracy statistics, bootstrap. Standard library only."""
