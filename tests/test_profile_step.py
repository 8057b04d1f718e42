"""benchmarks/profile_step.py sums a part's calls within a step before the median over steps (issue 17)."""
import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(Path(ROOT) / "benchmarks"))
from profile_step import PartTimer  # noqa: E402


def test_a_part_called_twice_in_a_step_counts_both_calls():
    timer = PartTimer()
    for calls in ([1.0, 2.0], [0.5, 0.5], [4.0]):  # three steps; the part runs twice in the first two
        timer.begin_step()
        for seconds in calls:
            timer.record("propagate", seconds)
    timer.begin_step()  # a fourth step where it does not run
    timer.record("backward", 1.0)
    parts = timer.step_parts(4)
    assert parts["propagate"] == 2.0  # median of 3.0, 1.0, 4.0, 0.0
    assert parts["backward"] == 0.0   # median of 0, 0, 0, 1.0


def test_the_clock_waits_for_queued_gpu_work_only_where_cuda_runs(monkeypatch):
    """profile_step.now synchronises CUDA before reading the clock (kernels run asynchronously), and never
    touches CUDA where it was not initialised (the CPU runs)."""
    import profile_step
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: calls.append("sync"))
    first = profile_step.now()
    assert calls == ["sync"] and profile_step.now() >= first
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    profile_step.now()
    assert calls == ["sync", "sync"]
