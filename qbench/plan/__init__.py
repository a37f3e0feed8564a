"""Stage 2: SuiteSpec + machine + filters + shards to the planned cases of a run."""
