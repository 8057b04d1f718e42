"""Which code produced a result, when and where: the commit of the checkout this package sits in, the UTC date
and the machine, for the benchmarks' run stamps and the analysis figures' ``drawn`` field."""
import datetime
import os
import platform
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


def utc_date():
    """Now, as the stamps write it: ``YYYY-MM-DD HH:MM UTC``."""
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


def machine(gpu=""):
    """Architecture, CPU count (then ``gpu``, e.g. ``", NVIDIA H100"``) and operating system."""
    return f"{platform.machine()}, {os.cpu_count()} CPUs{gpu}, {platform.system()}"
