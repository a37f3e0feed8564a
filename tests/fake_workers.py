"""Worker entry points that misbehave on purpose, chosen by the case's model name (used by test_launcher)."""

import ctypes
import os
import sys
import time

from qbench.errors import NotApplicable


def behave(task: dict) -> dict:
    model = task["case"]["model"]
    print(f"fake worker starting {model}", flush=True)
    if model == "raises":
        raise RuntimeError("recipe exploded\nsecond line")
    if model == "aborts":
        print("about to abort", file=sys.stderr, flush=True)
        os.abort()
    if model == "segfaults":
        ctypes.string_at(0)
    if model == "exits":
        os._exit(3)
    if model == "hangs":
        if os.environ.get("QBENCH_TEST_PIDFILE"):
            with open(os.environ["QBENCH_TEST_PIDFILE"], "w") as handle:
                handle.write(str(os.getpid()))
        time.sleep(3600)
    if model == "oom":
        hoard = [bytearray(2**28) for _ in range(64)]  # 16 GiB, far past the suite's 1 GiB address-space limit
        return {"status": "ok", "size": len(hoard)}
    if model == "cannot":
        raise NotApplicable("this mode cannot apply to this model")
    return {"status": "ok", "metrics": {"latency": {"unit": "s", "samples": [0.001, 0.002], "loops": 1}},
            "details": {"pid": os.getpid()}, "environment": {"torch": "fake"}}
