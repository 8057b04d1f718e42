"""Which code produced a result: the commit of the checkout this package sits in, for the benchmarks' run
stamps and the analysis figures' ``drawn`` field."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def code_commit():
    """The commit the tracked code is at now (marked when it differs from it). Taken when a run starts: a
    commit made while it trains is not the code it loaded."""
    if os.environ.get("RECBOLE_HYPERLLM_COMMIT"):  # a copy of the tree elsewhere (the GPU machine): its commit as given
        return os.environ["RECBOLE_HYPERLLM_COMMIT"] + " (given by RECBOLE_HYPERLLM_COMMIT)"
    if not (ROOT / ".git").exists():
        return "unknown (no .git)"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()  # the results are this run's output
    return commit + (" (uncommitted changes)" if dirty else "")
