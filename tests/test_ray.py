"""Ray Tune through run_hyper.py --tool=Ray (RecBole's Ray path with the plugin's objective), 2 tiny trials (exhaustive: each choice once)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, make_synthetic

pytest.importorskip("ray.tune", reason="pip install -e .[ray]")


def test_ray_tune_runs_two_trials_and_reports_the_best(tmp_path):
    make_synthetic(str(tmp_path))
    space = tmp_path / "space.hyper"
    space.write_text("margin choice [0.1,0.5]\n")
    out_file = tmp_path / "trials.txt"
    cmd = [sys.executable, os.path.join(ROOT, "run_hyper.py"), "--tool=Ray", "--model=HGCF", "--dataset=toy",
           f"--data_path={tmp_path}", f"--params_file={space}", "--algo=exhaustive", "--cpus=2", "--epochs=1",
           "--embedding_size=8", "--show_progress=False", "--state=ERROR", f"--output_file={out_file}",
           f"--ray_dir={tmp_path / 'ray'}", f"--checkpoint_dir={tmp_path / 'saved'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best params: {'margin': " in done.stdout and "'test_recall@20': " in done.stdout
    trials = out_file.read_text()
    assert "{'margin': 0.1}" in trials and "{'margin': 0.5}" in trials and trials.count("'best_valid_score'") == 2
