"""Issue 14: the paper's analyses as commands (groups, convergence, dendrogram, ablation) on tiny runs."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from recbole_hyperllm import analysis
from recbole_hyperllm.analysis import AnalysisError, user_groups
from recbole_hyperllm.errors import ConfigError, DivergenceError
from recbole_hyperllm.quick_start import run_recbole_hyperllm

pytest.importorskip("matplotlib", reason="pip install -e .[plot]")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs (HGCF, HyperLLM_HGCF Structural) and one diverged run on the toy dataset."""
    from conftest import FAST, make_synthetic

    root = tmp_path_factory.mktemp("analysis")
    make_synthetic(str(root))
    config = dict(FAST, data_path=str(root), checkpoint_dir=str(root / "saved"), epochs=3, eval_step=1)
    base = run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config))
    full = run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(config, variant="Structural"))
    with pytest.raises(DivergenceError):
        run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(config, variant="Structural",
                                                                       tag_margin=1e38))
    diverged = [os.path.join(root, "saved", f) for f in os.listdir(root / "saved")
                if f.endswith("-result.json") and os.path.join(root, "saved", f) not in (base["record"], full["record"])]
    return root, base, full, diverged[0]


def test_user_groups_are_equal_sized_ascending_and_keep_the_order_of_ties():
    counts = [5, 1, 3, 3, 9, 1, 2, 8, 3, 7]
    groups = user_groups(counts, 5)
    assert [len(g) for g in groups] == [2, 2, 2, 2, 2]
    assert [list(g) for g in groups] == [[1, 5], [6, 2], [3, 8], [0, 9], [7, 4]]
    assert [len(g) for g in user_groups(list(range(11)), 5)] == [3, 2, 2, 2, 2]


def test_groups_recombine_to_recboles_overall_metric(runs, tmp_path):
    root, base, full, _ = runs
    json_path, png_path = analysis.run("groups", [base["checkpoint"], full["checkpoint"]], str(tmp_path))
    data = json.load(open(json_path))
    assert os.path.getsize(png_path) > 1000 and len(data["models"]) == 2
    for model, result in zip(data["models"], (base, full)):
        sizes = np.array([g["users"] for g in model["groups"]])
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == model["overall"]["users"]
        for metric in ("recall@20", "ndcg@20"):
            weighted = sum(g["users"] * g[metric] for g in model["groups"]) / sizes.sum()
            assert weighted == pytest.approx(model["overall"][metric], abs=1e-9)
            assert model["overall"][metric] == pytest.approx(result["test_result"][metric], abs=1e-4)
        lows = [g["train_interactions"] for g in model["groups"]]
        assert all(a[1] <= b[0] for a, b in zip(lows, lows[1:]))  # G1 the sparsest
    assert "improvement_%" in data["models"][1]["groups"][0]


def test_convergence_draws_every_validated_epoch_of_finished_runs(runs, tmp_path):
    _, base, full, _ = runs
    json_path, png_path = analysis.run("convergence", [base["record"], full["record"]], str(tmp_path))
    data = json.load(open(json_path))
    assert [r["epochs"] for r in data["runs"]] == [[0, 1, 2], [0, 1, 2]] and os.path.getsize(png_path) > 1000
    assert data["runs"][1]["label"] == "HyperLLM_HGCF (Structural)"


def test_dendrogram_clusters_the_same_items_of_two_models(runs, tmp_path):
    _, base, full, _ = runs
    json_path, png_path = analysis.run("dendrogram", [base["checkpoint"], full["checkpoint"]], str(tmp_path),
                                       items=20, clusters=3)
    data = json.load(open(json_path))
    assert len(data["items"]) == 20 and [len(m["linkage"]) for m in data["models"]] == [19, 19]
    assert all(sum(m["cluster_sizes"]) == 20 and len(m["cluster_sizes"]) == 3 for m in data["models"])
    assert os.path.getsize(png_path) > 1000


def test_ablation_shows_a_diverged_run_as_diverged(runs, tmp_path):
    _, base, full, diverged = runs
    json_path, png_path = analysis.run("ablation", [base["record"], full["record"], diverged], str(tmp_path))
    rows = json.load(open(json_path))["rows"]
    assert [r["recall@20"] is None for r in rows] == [False, False, True]
    assert "loss term 'tag' is inf" in rows[2]["diverged"] and os.path.getsize(png_path) > 1000


def test_bad_inputs_name_the_problem(runs, tmp_path):
    root, base, full, _ = runs
    with pytest.raises(ConfigError, match="unknown analysis 'group'"):
        analysis.run("group", [base["checkpoint"]], str(tmp_path))
    progress = json.load(open(base["record"]))["progress_file"]
    with pytest.raises(AnalysisError, match="is not a best-model checkpoint"):
        analysis.run("groups", [progress], str(tmp_path))
    other = {"dataset": "ml-100k", "data_path": "/d/ml-100k", "benchmark_filename": None, "seed": 1}
    mine = dict(other, dataset="toy", data_path="/d/toy")
    with pytest.raises(AnalysisError, match="b.pth is a run on ml-100k .*, but a.pth is on toy"):
        analysis.same_data(["a.pth", "b.pth"], [mine, other])
    with pytest.raises(AnalysisError, match="dendrogram compares two models; got 1"):
        analysis.run("dendrogram", [base["checkpoint"]], str(tmp_path))
    with pytest.raises(AnalysisError, match="nothing.pth not found"):
        analysis.run("groups", [str(root / "nothing.pth")], str(tmp_path))


def test_the_command_line_draws_groups_in_a_fresh_process(runs, tmp_path):
    """A fresh process builds no RecBole Config before reading the checkpoint (RecBole's numpy aliases)."""
    import subprocess
    import sys

    from conftest import ROOT
    _, base, full, _ = runs
    done = subprocess.run([sys.executable, "-m", "recbole_hyperllm.analysis", "groups", base["checkpoint"],
                           full["checkpoint"], "--out", str(tmp_path), "--labels", "HGCF,HyperLLM"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.load(open(tmp_path / "groups.json"))
    assert done.stdout.startswith("wrote ") and written["labels"] == ["HGCF", "HyperLLM"]
    assert written["command"].startswith("python -m recbole_hyperllm.analysis groups ")
    assert written["drawn"]["date"].endswith(" UTC") and written["drawn"]["commit"] and written["drawn"]["machine"]


def test_beauty_figures_with_tag_summaries_run_this_projects_phase_1_for_hyperllm_only(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures

    assert figures.run_settings("HyperLLM", own_phase1=True) == ("HyperLLM_HGCF", {"semantic_init": "moe"})
    assert figures.run_settings("w/o Meta", own_phase1=True)[1] == {"ablation": "wo_meta", "semantic_init": "moe"}
    assert figures.run_settings("Base", own_phase1=True) == ("HGCF", {})
    assert figures.run_settings("HyperLLM") == ("HyperLLM_HGCF", {})
    assert figures.run_settings("Base", backbone="HGCH") == ("HGCH", {})
    assert figures.run_settings("w/o CL", backbone="HGCH") == ("HyperLLM_HGCH", {"ablation": "wo_cl"})
    assert figures.run_settings("HyperLLM_HRCF", backbone="HGCH") == ("HyperLLM_HRCF", {})
    assert figures.main(["--dataset", "beauty", "--semantic", "tag-summaries", "--data", str(tmp_path)]) == 0
    assert "skipped" in capsys.readouterr().out


def test_paper_check_says_agrees_only_when_the_numbers_do(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures

    runs = [{"label": "Base", "epochs": [1, 2, 3, 4], "recall@20": [0.1, 0.2, 0.3, 0.4]},
            {"label": "HyperLLM", "epochs": [1, 2, 3, 4], "recall@20": [0.39, 0.4, 0.41, 0.41]}]
    (tmp_path / "convergence.json").write_text(json.dumps({"runs": runs}))
    groups = [{"recall@20": 0.1, "improvement_%": {"recall@20": g}} for g in (5.0, 4.0, 3.0, -1.0, 2.0)]
    (tmp_path / "groups.json").write_text(json.dumps({"models": [{"label": "HGCF", "groups": []},
                                                               {"label": "HyperLLM_HGCF", "groups": groups}]}))
    text = "\n".join(figures.paper_check(tmp_path))
    assert "converges in far fewer epochs): agrees by the first epoch at 95% of the run's own best validation R@20: HyperLLM 1, Base 4" in text
    assert "; agrees by the first epoch at validation R@20 0.4000 (the lowest best among the runs, a level each reaches): Base 4, HyperLLM 2" in text
    # a run that stops early at a low best is 'near its best' soon; the common level still ranks HyperLLM first
    runs.append({"label": "w/o Meta", "epochs": [1, 2, 3, 4], "recall@20": [0.2, 0.21, 0.2, 0.2]})
    (tmp_path / "convergence.json").write_text(json.dumps({"runs": runs}))
    text = "\n".join(figures.paper_check(tmp_path))
    assert "epochs): does not hold by the first epoch at 95% of the run's own best validation R@20: HyperLLM 1, Base 4, w/o Meta 1" in text
    assert "; agrees by the first epoch at validation R@20 0.2100 (the lowest best among the runs, a level each reaches): Base 3, HyperLLM 1, w/o Meta 2" in text
    assert "most the sparse ones): does not hold" in text
    groups[3]["improvement_%"]["recall@20"] = 1.0
    (tmp_path / "groups.json").write_text(json.dumps({"models": [{"label": "HGCF", "groups": []},
                                                               {"label": "HyperLLM_HGCF", "groups": groups}]}))
    assert "most the sparse ones): agrees" in "\n".join(figures.paper_check(tmp_path))


def test_a_kept_record_draws_convergence_after_the_run_folder_is_gone(runs, tmp_path):
    """figures.keep_record folds the validation history into a copy under --out: Figures 2 and 3 can be drawn
    from it alone (the runs' folders under /tmp, or on a GPU machine, are gone by then)."""
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures

    root, base, full, _ = runs
    moved = tmp_path / "moved"
    shutil.copytree(root / "saved", moved)
    record = str(moved / Path(base["record"]).name)
    progress = json.load(open(record))["progress_file"]
    kept = figures.keep_record(record, str(tmp_path / "out"), "w/o Meta")
    assert kept == "records/w_o_Meta.json"
    copy = json.load(open(tmp_path / "out" / kept))
    assert "progress_file" not in copy and copy["valid_results"] and copy["test_result"] == base["test_result"]
    run = {"record": str(tmp_path / "gone.json"), "kept_record": kept}
    assert figures.history_record(run, str(tmp_path / "out")) == str(tmp_path / "out" / kept)
    assert figures.history_record({"record": str(tmp_path / "gone.json")}, str(tmp_path / "out")) is None
    json_path, _ = analysis.run("convergence", [str(tmp_path / "out" / kept)], str(tmp_path / "figure"))
    assert json.load(open(json_path))["runs"][0]["recall@20"]
    assert os.path.isfile(progress)  # the original run's files were left alone


def test_figures_redraws_ablation_and_convergence_from_kept_records_without_retraining(runs, tmp_path, monkeypatch):
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures

    root, base, _, _ = runs
    copies = tmp_path / "saved"
    shutil.copytree(root / "saved", copies)
    trained = []

    def fake_train(name, *args):
        trained.append(name)
        return {"model": "HGCF", "settings": {}, "record": str(copies / Path(base["record"]).name)}

    monkeypatch.setattr(figures, "train", fake_train)
    argv = ["--dataset", "ml-100k", "--figures", "ablation,convergence", "--out", str(tmp_path / "out"),
            "--workdir", str(tmp_path / "work")]
    assert figures.main(argv) == 0
    assert len(trained) == len(figures.FIGURES["ablation"])  # the convergence runs are among them
    shutil.rmtree(copies)  # the run folders are gone (a new session, or runs made on another machine)
    assert figures.main(argv) == 0 and len(trained) == len(figures.FIGURES["ablation"])  # nothing retrained
    assert json.load(open(tmp_path / "out" / "convergence.json"))["runs"]


def test_figures_processes_training_different_runs_keep_each_others_entries(tmp_path, monkeypatch):
    """figures.py --only: each process trains its own runs into one --out; runs.json keeps them all."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures

    runs_file = tmp_path / "runs.json"
    figures.update_runs(runs_file, "Base", {"record": "a"})
    stale = figures.read_runs(runs_file)  # what a second process read before the first wrote again
    figures.update_runs(runs_file, "w/o Meta", {"record": "b"})
    figures.update_runs(runs_file, "HyperLLM", dict(stale.get("HyperLLM", {}), record="c"))
    assert figures.read_runs(runs_file) == {"Base": {"record": "a"}, "w/o Meta": {"record": "b"},
                                            "HyperLLM": {"record": "c"}}

    trained = []
    monkeypatch.setattr(figures, "train", lambda name, *args: trained.append(name) or {"error": "not trained"})
    argv = ["--dataset", "ml-100k", "--figures", "convergence", "--out", str(tmp_path / "out"),
            "--workdir", str(tmp_path / "work")]
    assert figures.main(argv + ["--only", "w/o Meta"]) == 0 and trained == ["w/o Meta"]
    with pytest.raises(SystemExit, match="--only 'w/o CL' is not a run of --figures convergence"):
        figures.main(argv + ["--only", "w/o CL"])


def test_figures_extend_trains_again_only_runs_that_ran_out_of_epochs(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures

    out = tmp_path / "out"
    out.mkdir()
    (out / "records").mkdir()
    for name in ("Base", "HyperLLM", "w_o_Meta"):
        (out / "records" / f"{name}.json").write_text("{}")
    stamp = {"date": "2026-11-26 18:00 UTC", "commit": "abc1234"}
    figures.update_runs(out / "runs.json", "Base", {"kept_record": "records/Base.json", "best_epoch": 499, "epochs": 500,
                                                    **stamp})
    figures.update_runs(out / "runs.json", "HyperLLM", {"kept_record": "records/HyperLLM.json", "best_epoch": 223,
                                                        "epochs": 275, **stamp})  # stopped early (patience 50)
    figures.update_runs(out / "runs.json", "w/o Meta", {"kept_record": "records/w_o_Meta.json", "best_epoch": 141,
                                                        "epochs": 193, **stamp})
    trained = []
    monkeypatch.setattr(figures, "train", lambda name, *args: trained.append((name, args[2].get("epochs")))
                        or {"error": "not trained"})
    argv = ["--dataset", "ml-100k", "--figures", "convergence", "--out", str(out), "--workdir", str(tmp_path / "w")]
    assert figures.main(argv + ["--extend"]) == 0 and trained == []  # no larger budget given: nothing to extend
    assert figures.main(argv + ["--extend", "--set", "epochs=500"]) == 0 and trained == []
    assert figures.main(argv + ["--set", "epochs=900"]) == 0 and trained == []  # without --extend: kept
    assert figures.main(argv + ["--extend", "--set", "epochs=900"]) == 0 and trained == [("Base", 900)]
    assert figures.read_runs(out / "runs.json")["Base"]["best_epoch"] == 499  # the failed extension kept it


def test_figures_draw_unfinished_convergence_runs_from_their_progress_files(runs, tmp_path, monkeypatch):
    """--draw-unfinished: a convergence run without a record is drawn from its own -last.pth, labelled so."""
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures

    root, base, _, _ = runs
    progress = sorted((root / "saved").glob("HGCF-*-last.pth"))
    assert progress, "the HGCF run keeps a progress file"
    work = tmp_path / "work"
    model, _ = figures.run_settings("w/o Meta")
    folder = work / "saved" / "runs" / f"{model}-w_o_Meta"  # the run folder figures.train gives 'w/o Meta'
    folder.mkdir(parents=True)
    shutil.copy(progress[-1], folder / progress[-1].name)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("Base", "HyperLLM"):
        figures.update_runs(out / "runs.json", name, {"record": base["record"], "date": "2026-11-26 20:00 UTC",
                                                      "commit": "abc1234"})
    trained = []
    monkeypatch.setattr(figures, "train", lambda name, *args: trained.append(name) or {"error": "not trained here"})
    argv = ["--dataset", "ml-100k", "--figures", "convergence", "--out", str(out), "--workdir", str(work)]
    assert figures.main(argv) == 0 and not (out / "convergence.json").exists()  # without the flag: not drawn
    assert trained == ["w/o Meta"]
    assert figures.main(argv + ["--draw-unfinished", "--no-train"]) == 0 and trained == ["w/o Meta"]
    drawn = json.loads((out / "convergence.json").read_text())["runs"]
    assert [r["label"] for r in drawn] == ["Base", "w/o Meta (unfinished, 3 epochs)", "HyperLLM"]
    assert (out / "records" / "w_o_Meta-unfinished.json").is_file() and (out / "convergence.png").stat().st_size > 0


def test_figures_reuses_a_run_only_when_it_trained_what_figures_would_train(runs, tmp_path, monkeypatch):
    """--reuse NAME=RECORD: a finished run of another command stands for NAME when its final configuration
    (but the keys that only place files) and its input files equal what figures.py would train NAME with."""
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import figures
    from conftest import FAST

    root, base, full, _ = runs
    same = dict(FAST, epochs=3, eval_step=1)
    entry = figures.reuse_run("Base", base["record"], "toy", str(root), same)
    assert entry["model"] == "HGCF" and entry["test_result"] == base["test_result"]
    assert entry["reused_record"] == base["record"] and entry["best_epoch"] == base["best_epoch"]
    with pytest.raises(SystemExit, match=r"other settings than figures.py gives Base now: epochs=3 \(now 4\)"):
        figures.reuse_run("Base", base["record"], "toy", str(root), dict(same, epochs=4))
    with pytest.raises(SystemExit, match="a finished HyperLLM_HGCF run is needed, the record is of HGCF"):
        figures.reuse_run("HyperLLM", base["record"], "toy", str(root), same)
    other = tmp_path / "data"
    shutil.copytree(root / "toy", other / "toy")
    inter = other / "toy" / "toy.inter"
    assert figures.reuse_run("Base", base["record"], "toy", str(other), same)["model"] == "HGCF"  # same bytes
    lines = inter.read_text().splitlines(keepends=True)
    inter.write_text("".join(lines[:-1]))  # one interaction fewer
    with pytest.raises(SystemExit, match=r"are not the ones here \(differ: toy.inter\)"):
        figures.reuse_run("Base", base["record"], "toy", str(other), same)
    with pytest.raises(SystemExit, match="--reuse 'HRCF' is not a run of --figures convergence"):
        figures.main(["--dataset", "ml-100k", "--figures", "convergence", "--out", str(tmp_path / "out"),
                      "--workdir", str(tmp_path / "work"), "--reuse", f"HRCF={base['record']}"])
    trained = []
    monkeypatch.setattr(figures, "reuse_run", lambda name, record, *args: {
        "model": "HyperLLM_HGCF", "settings": {}, "record": record, "test_result": {}, "reused_record": record})
    monkeypatch.setattr(figures, "train", lambda name, *args: trained.append(name) or {
        "model": "HGCF", "settings": {}, "record": base["record"]})
    out = tmp_path / "out"
    assert figures.main(["--dataset", "ml-100k", "--figures", "convergence", "--out", str(out), "--workdir",
                         str(tmp_path / "work"), "--reuse", f"HyperLLM={full['record']}"]) == 0
    assert trained == ["Base", "w/o Meta"]  # HyperLLM is not trained again
    assert figures.read_runs(out / "runs.json")["HyperLLM"]["reused_record"] == full["record"]
    assert f"HyperLLM reused from `{full['record']}`" in (out / "summary.md").read_text().splitlines()[0]
