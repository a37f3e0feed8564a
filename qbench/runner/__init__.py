"""Stage 4, the child side: the worker process, the only code that imports torch.

`qbench ab` starts workers inside other commits of this repository, so `qbench.runner.worker`,
`qbench.runner.zygote` and `qbench.runner.catalog` keep their paths and their task/result files.
"""
