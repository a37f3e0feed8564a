"""Stage 1: suite files (TOML, data only) to a validated SuiteSpec: loading, qconfig names, runner profiles."""
