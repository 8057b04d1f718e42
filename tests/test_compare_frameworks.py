"""benchmarks/compare_frameworks.py: the Table 4 rows and the ordering check against the paper (issue 12)."""
import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(Path(ROOT) / "benchmarks"))
from compare_frameworks import PAPER_BEAUTY, markdown_table, ordering_check  # noqa: E402


def entry(recall20, ndcg20=0.05):
    return {"test": {"recall@10": 0.1, "recall@20": recall20, "ndcg@10": 0.04, "ndcg@20": ndcg20},
            "best_epoch": 3, "epochs": 9, "sec_per_epoch": 1.0, "sec_to_best": 3.0, "peak_rss_mb": 100.0}


def test_rows_give_the_change_against_the_same_backbones_base_and_the_papers():
    results = {"HGCF@1": entry(0.2, 0.1), "KAR_HGCF@1": entry(0.22, 0.09)}
    table = markdown_table(results, PAPER_BEAUTY)
    kar = next(line for line in table.splitlines() if "| KAR |" in line)
    paper = PAPER_BEAUTY["HGCF"]
    expected_paper = f"{100 * (paper['KAR'][0] / paper['Base'][0] - 1):+.1f}%"
    assert "+10.0% / -10.0%" in kar and expected_paper in kar


def test_ordering_check_counts_pairs_ordered_as_in_the_paper():
    # the paper over HGCF: HyperLLM > RLMRecCon > RLMRecGen > Base > KAR (R@20)
    results = {"HGCF@1": entry(0.20), "KAR_HGCF@1": entry(0.21), "HyperLLM_HGCF@1": entry(0.25),
               "HyperLLM_HGCF@2": entry(0.23), "RLMRecGen_HGCF@1": entry(0.1, 0.1) | {"error": "crashed"}}
    lines = ordering_check(results, PAPER_BEAUTY)
    hgcf = next(line for line in lines if line.startswith("- HGCF"))
    # Base/KAR reversed here; HyperLLM (mean 0.24) first in both; the errored run is left out
    assert "here HyperLLM > KAR > Base" in hgcf and "the paper HyperLLM > Base > KAR" in hgcf
    assert "2 of 3 pairs ordered alike (not: Base vs KAR)" in hgcf
    assert ordering_check({"HGCF@1": entry(0.2)}, PAPER_BEAUTY) == []  # one framework: nothing to order


def test_extend_continues_only_the_runs_that_ended_at_their_budget_from_their_own_progress_file(tmp_path, monkeypatch):
    import json

    import compare_frameworks

    out, saved = tmp_path / "fw.json", tmp_path / "work" / "split2020" / "saved"
    capped = dict(entry(0.30), epochs=150, config={"epochs": 150})
    stopped = dict(entry(0.31), epochs=90, config={"epochs": 150})
    out.write_text(json.dumps({"HGCF@2020": capped, "HRCF@2020": stopped}))
    (saved / "runs" / "HGCF_2020").mkdir(parents=True)
    (saved / "runs" / "HGCF_2020" / "HGCF-a-last.pth").write_bytes(b"")
    (saved / "HRCF-b-last.pth").write_bytes(b"")  # not its own folder: never read
    calls = []
    monkeypatch.setattr(compare_frameworks, "run_in_subprocess",
                        lambda model, config, files, dataset: calls.append((model, config)) or {"error": "stub"})
    argv = ["--dataset", "ml-100k", "--seeds", "2020", "--backbones", "HGCF,HRCF", "--frameworks", "Base",
            "--workdir", str(tmp_path / "work"), "--out", str(out), "--extend"]
    assert compare_frameworks.ended_at_budget(capped) and not compare_frameworks.ended_at_budget(stopped)
    # no --set epochs (the Beauty runs): the budget is the model's YAML default, 500 in properties/overall.yaml
    assert compare_frameworks.ended_at_budget(dict(entry(0.3), model="RLMRecGen_HGCH", epochs=500, config={}))
    assert not compare_frameworks.ended_at_budget(dict(entry(0.3), model="RLMRecGen_HGCH", epochs=460, config={}))
    # a run that recorded its budget (set anywhere: --set, a dataset YAML) is judged by that budget
    recorded = dict(entry(0.3), model="RLMRecGen_HGCH", epochs=200, epoch_budget=200, config={})
    assert compare_frameworks.ended_at_budget(recorded)
    assert not compare_frameworks.ended_at_budget(dict(recorded, epoch_budget=300))
    compare_frameworks.main(argv + ["--set", "epochs=150"])  # not above the budget it had: nothing runs
    assert calls == []
    compare_frameworks.main(argv + ["--set", "epochs=300"])
    assert [model for model, _ in calls] == ["HGCF"]
    assert calls[0][1]["epochs"] == 300
    assert calls[0][1]["resume_from"] == str(saved / "runs" / "HGCF_2020" / "HGCF-a-last.pth")


def test_import_run_fills_a_cell_from_a_figures_run_of_the_same_settings_only(tmp_path, monkeypatch):
    import json

    import pytest

    import compare_frameworks

    record = {"settings": {"model": "HyperLLM_HGCF", "dataset": "ml-100k", "seed": 2020, "variant": "HyperLLM",
                           "ablation": "none", "semantic_init": "moe", "cl_scope": "all", "test_mask": "train_valid"},
              "test_result": entry(0.3)["test"], "best_valid_result": entry(0.31)["test"], "best_epoch": 7,
              "epochs": 20, "sec_per_epoch": 2.0, "sec_to_best": 16.0, "peak_rss_mb": 900.0, "seconds": 40.0}
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "HyperLLM.json").write_text(json.dumps(record))
    stamp = {"command": "python benchmarks/figures.py ...", "commit": "abc1234", "date": "2026-11-26 15:01 UTC",
             "machine": "x86_64"}
    (tmp_path / "runs.json").write_text(json.dumps({"HyperLLM": {"kept_record": "records/HyperLLM.json", **stamp}}))
    monkeypatch.setattr(compare_frameworks, "run_in_subprocess", lambda *a, **k: pytest.fail("nothing may train"))
    out = tmp_path / "fw.json"
    argv = ["--dataset", "ml-100k", "--backbones", "HGCF", "--frameworks", "HyperLLM", "--workdir",
            str(tmp_path / "work"), "--out", str(out)]
    compare_frameworks.main(argv + ["--seeds", "2020", "--import-run", f"HyperLLM_HGCF@2020={tmp_path}/runs.json#HyperLLM"])
    cell = json.loads(out.read_text())["HyperLLM_HGCF@2020"]
    assert cell["test"] == entry(0.3)["test"] and cell["best_epoch"] == 7 and cell["run"] == stamp
    assert "imported from run" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match="its seed is 2020, the cell's 2021"):
        compare_frameworks.main(argv + ["--seeds", "2021", "--import-run", f"HyperLLM_HGCF@2021={tmp_path}/runs.json#HyperLLM"])
    with pytest.raises(SystemExit, match="has no finished run 'Base'"):
        compare_frameworks.main(argv + ["--seeds", "2021", "--import-run", f"HyperLLM_HGCF@2021={tmp_path}/runs.json#Base"])
    with pytest.raises(SystemExit, match="not a cell of this command"):
        compare_frameworks.main(argv + ["--seeds", "2020", "--import-run", f"KAR_HGCF@2020={tmp_path}/runs.json#HyperLLM"])


def test_merge_copies_finished_cells_of_another_output_and_keeps_what_out_holds(tmp_path, monkeypatch):
    import json

    import pytest

    import compare_frameworks

    stamp = {"command": "python benchmarks/compare_frameworks.py --frameworks KAR ...", "commit": "abc1234",
             "date": "2026-11-26 17:05 UTC", "machine": "NVIDIA H100"}
    other = tmp_path / "kar.json"
    other.write_text(json.dumps({"KAR_HGCF@2020": dict(entry(0.33), dataset="ml-100k", run=stamp),
                                 "HGCF@2020": dict(entry(0.25), dataset="ml-100k", run=stamp),
                                 "HRCF@2020": {"error": "killed", "dataset": "ml-100k"}}))
    out = tmp_path / "fw.json"
    out.write_text(json.dumps({"HGCF@2020": dict(entry(0.36), dataset="ml-100k", run=stamp)}))
    monkeypatch.setattr(compare_frameworks, "run_in_subprocess", lambda *a, **k: pytest.fail("nothing may train"))
    argv = ["--dataset", "ml-100k", "--seeds", "2020", "--backbones", "HGCF", "--frameworks", "Base,KAR",
            "--workdir", str(tmp_path / "work"), "--out", str(out)]
    compare_frameworks.main(argv + ["--merge", str(other)])
    cells = json.loads(out.read_text())
    assert sorted(cells) == ["HGCF@2020", "KAR_HGCF@2020"]  # the error cell is not merged
    assert cells["HGCF@2020"]["test"]["recall@20"] == 0.36  # out's own cell is kept
    assert cells["KAR_HGCF@2020"]["run"] == stamp and cells["KAR_HGCF@2020"]["merged_from"] == str(other)
    assert "KAR_HGCF@2020: merged from" in out.with_suffix(".md").read_text()
    other.write_text(json.dumps({"KAR_HRCF@1234": dict(entry(0.2), dataset="Amazon_Beauty", run=stamp)}))
    with pytest.raises(SystemExit, match="cell KAR_HRCF@1234 cannot be merged .its dataset is 'Amazon_Beauty'"):
        compare_frameworks.main(argv + ["--merge", str(other)])


def test_choose_trains_each_value_and_keeps_the_one_best_on_validation_never_on_test(tmp_path, monkeypatch):
    import json

    import pytest

    import compare_frameworks

    # kd_weight 0.001 is best on validation, 0.01 on test: the validation score decides
    scores = {0.01: (0.20, 0.40), 0.001: (0.30, 0.35)}
    calls = []

    def fake_run(model, config, files, dataset):
        calls.append((model, config.get("kd_weight")))
        valid, test = scores.get(config.get("kd_weight"), (0.25, 0.30))
        return {"test_result": entry(test)["test"], "best_valid_result": entry(valid)["test"], "best_valid_score": valid,
                "best_epoch": 3, "epochs": 9, "sec_per_epoch": 1.0, "peak_rss_mb": 10.0, "seconds": 9.0}

    monkeypatch.setattr(compare_frameworks, "run_in_subprocess", fake_run)
    out = tmp_path / "fw.json"
    argv = ["--dataset", "ml-100k", "--seeds", "2020", "--backbones", "HGCF", "--frameworks", "Base,RLMRecCon",
            "--workdir", str(tmp_path / "work"), "--out", str(out), "--choose", "kd_weight=0.01,0.001"]
    compare_frameworks.main(argv)
    assert sorted(calls, key=str) == sorted([("HGCF", None), ("RLMRecCon_HGCF", 0.01), ("RLMRecCon_HGCF", 0.001)],
                                            key=str)  # HGCF does not read kd_weight: trained once, as it is
    cells = json.loads(out.read_text())
    cell = cells["RLMRecCon_HGCF@2020"]
    assert cell["chosen"] == "kd_weight=0.001" and cell["test"]["recall@20"] == 0.35
    assert cell["chosen_among"] == {"RLMRecCon_HGCF[kd_weight=0.01]@2020": 0.2, "RLMRecCon_HGCF[kd_weight=0.001]@2020": 0.3}
    table = out.with_suffix(".md").read_text()
    assert "kd_weight=0.001 chosen on validation" in table and "[kd_weight" not in table.split("| backbone")[1]
    assert "| 1, 1 chosen |" in next(line for line in table.splitlines() if "| RLMRecCon |" in line)
    calls.clear()
    compare_frameworks.main(argv)  # everything is kept: nothing trains again
    assert calls == []
    with pytest.raises(SystemExit, match="at least two values"):
        compare_frameworks.main(argv[:-1] + ["kd_weight=0.01"])


def test_choose_reuses_the_cell_trained_with_the_default_and_only_with_the_same_settings(tmp_path, monkeypatch):
    import json

    import compare_frameworks

    calls = []

    def fake_run(model, config, files, dataset):
        calls.append(config.get("kd_weight"))
        valid = 0.3 if config.get("kd_weight") == 0.001 else 0.2
        return {"test_result": entry(valid)["test"], "best_valid_result": entry(valid)["test"],
                "best_valid_score": valid, "best_epoch": 3, "epochs": 9, "sec_per_epoch": 1.0, "peak_rss_mb": 10.0,
                "seconds": 9.0}

    monkeypatch.setattr(compare_frameworks, "run_in_subprocess", fake_run)
    out = tmp_path / "fw.json"
    argv = ["--dataset", "ml-100k", "--seeds", "2020", "--backbones", "HGCF", "--frameworks", "RLMRecCon",
            "--workdir", str(tmp_path / "work"), "--out", str(out), "--set", "epochs=9"]
    compare_frameworks.main(argv)  # the cell with RLMRecCon.yaml's kd_weight (0.01), before --choose
    plain = json.loads(out.read_text())["RLMRecCon_HGCF@2020"]
    compare_frameworks.main(argv + ["--choose", "kd_weight=0.01,0.001"])
    assert calls == [None, 0.001]  # 0.01 is the default the cell trained with: not trained again
    cells = json.loads(out.read_text())
    reused = cells["RLMRecCon_HGCF[kd_weight=0.01]@2020"]
    assert reused["reused_from"] == "RLMRecCon_HGCF@2020" and reused["test"] == plain["test"]
    assert cells["RLMRecCon_HGCF@2020"]["chosen"] == "kd_weight=0.001"
    assert "the cell RLMRecCon_HGCF@2020 as it was trained with the default" in out.with_suffix(".md").read_text()
    # a cell trained with other settings (here a longer budget) is not the candidate: both values train
    calls.clear()
    out.write_text(json.dumps({"RLMRecCon_HGCF@2020": dict(plain, config=dict(plain["config"], epochs=400))}))
    compare_frameworks.main(argv + ["--choose", "kd_weight=0.01,0.001"])
    assert sorted(calls) == [0.001, 0.01]


def test_no_train_assembles_chosen_cells_from_merged_candidates_and_trains_nothing(tmp_path, monkeypatch):
    import json

    import pytest

    import compare_frameworks

    stamp = {"command": "gpu lane", "commit": "abc1234", "date": "2026-11-26 19:50 UTC", "machine": "NVIDIA H100"}

    def candidate(valid, test):
        return dict(entry(test), best_valid_score=valid, dataset="ml-100k", run=stamp)

    lanes = tmp_path / "lanes.json"  # both candidates of RLMRecCon_HGCF@2020, one of RLMRecCon_HRCF@2020
    lanes.write_text(json.dumps({"RLMRecCon_HGCF[kd_weight=0.01]@2020": candidate(0.2, 0.4),
                                 "RLMRecCon_HGCF[kd_weight=0.001]@2020": candidate(0.3, 0.35),
                                 "RLMRecCon_HRCF[kd_weight=0.01]@2020": candidate(0.2, 0.3)}))
    out = tmp_path / "fw.json"
    old = dict(entry(0.25), dataset="ml-100k", run=stamp)  # the cell as it was before --choose
    out.write_text(json.dumps({"RLMRecCon_HGCF@2020": old, "RLMRecCon_HRCF@2020": old}))
    monkeypatch.setattr(compare_frameworks, "run_in_subprocess", lambda *a, **k: pytest.fail("nothing may train"))
    compare_frameworks.main(["--dataset", "ml-100k", "--seeds", "2020", "--backbones", "HGCF,HRCF", "--frameworks",
                             "RLMRecCon", "--workdir", str(tmp_path / "work"), "--out", str(out), "--merge",
                             str(lanes), "--choose", "kd_weight=0.01,0.001", "--no-train"])
    cells = json.loads(out.read_text())
    assert cells["RLMRecCon_HGCF@2020"]["chosen"] == "kd_weight=0.001"  # all candidates there: chosen
    assert cells["RLMRecCon_HGCF@2020"]["test"]["recall@20"] == 0.35
    assert cells["RLMRecCon_HRCF@2020"] == old  # a candidate missing: the cell stays as it was
    assert "RLMRecCon_HRCF[kd_weight=0.001]@2020" not in cells


def test_time_columns_come_from_cpu_runs_and_are_marked_when_a_row_has_only_gpu_runs():
    import compare_frameworks

    def run(seconds, machine):
        return dict(entry(0.3), sec_per_epoch=seconds, sec_to_best=10 * seconds, peak_rss_mb=100.0,
                    run={"machine": machine})

    cpu, gpu = "x86_64, 2 CPUs, Linux, torch 2.13.0+cpu", "x86_64, 16 CPUs, NVIDIA H100 80GB HBM3, Linux"
    table = compare_frameworks.markdown_table({"HGCF@2020": run(9.0, cpu), "HGCF@2021": run(1.0, gpu),
                                               "KAR_HGCF@2021": run(2.0, gpu)})
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| HGCF")}
    assert "| 9.00 | 90 | 100 |" in rows["Base"]  # the GPU seed's 1.0 s is not in the CPU median
    assert f"| 2.00{compare_frameworks.GPU_MARK} | 20{compare_frameworks.GPU_MARK} |" in rows["KAR"]
    assert not compare_frameworks.on_gpu({"run": {"machine": "x86_64, 16 CPUs, no GPU, torch 2.11"}})


def test_validation_score_of_runs_recorded_before_the_score_was_kept_is_the_sum_of_their_validation_metrics():
    from compare_frameworks import validation_score

    valid = {"recall@10": 0.2118, "recall@20": 0.3383, "ndcg@10": 0.2244, "ndcg@20": 0.2579}
    assert validation_score({"best_valid_score": 0.9, "valid": valid}) == 0.9  # the kept score first
    assert validation_score({"valid": valid, "config": {"seed": 1}}) == 1.0324  # the summed default valid_metric
    assert validation_score({"valid": valid, "config": {"valid_metric": "recall@20"}}) is None  # another metric
    assert validation_score({"valid": {"recall@20": 0.3}}) is None  # metrics missing


def test_the_table_marks_a_choice_made_with_a_summed_validation_score():
    from compare_frameworks import chosen_entry, provenance

    valid = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.2, "ndcg@20": 0.3}
    old = dict(entry(0.3), valid=valid, config={})  # recorded before best_valid_score was kept: 1.0
    new = dict(entry(0.35), best_valid_score=1.1)
    results = {"RLMRecGen_HGCF[recon_weight=0.1]@1": old, "RLMRecGen_HGCF[recon_weight=0.01]@1": new}
    options = [("RLMRecGen_HGCF[recon_weight=0.1]@1", {}), ("RLMRecGen_HGCF[recon_weight=0.01]@1", {})]
    results["RLMRecGen_HGCF@1"] = chosen_entry(results, options)
    text = provenance(results)
    assert "recon_weight=0.01 chosen on validation (`--choose`; scores recon_weight=0.1: 1.0000*, recon_weight=0.01: 1.1000)" in text
    assert "* the sum of that run's recorded best-epoch validation metrics" in text


def test_the_table_names_the_settings_a_cell_was_given_that_others_were_not():
    from compare_frameworks import provenance

    common = {"seed": 1, "learning_rate": 0.005, "show_progress": False, "require_pow": False, "max_norm": 1}
    results = {"HRCF@1": dict(entry(0.3), config=dict(common)), "HICF@1": dict(entry(0.3), config=dict(common)),
               "HyperCL@1": dict(entry(0.3), config=dict(common, max_norm=1.0)),  # 1.0 is the usual 1
               "HGCF_x@1": dict(entry(0.3), config=dict(common, require_pow=0.0)),  # not the bool False
               "HRCF@2": dict(entry(0.3), config=dict(common, seed=2, epochs=1000)),  # another seed's usual
               "HGCH@1": dict(entry(0.3), config=dict(common, epochs=1000, checkpoint_dir="/w/HGCH_1")),
               "HGCF@1": dict(entry(0.3), config=dict(common, checkpoint_dir="/w/HGCF_1")),
               "HyperLLM_HGCH@1": dict(entry(0.3), config=dict(common, max_norm=0, epochs=1000)),
               "RLMRecCon_HGCF@1": dict(entry(0.3), chosen="kd_weight=0.001",
                                        chosen_among={"RLMRecCon_HGCF[kd_weight=0.001]@1": 1.0},
                                        config=dict(common, kd_weight=0.001)),
               "RLMRecCon_HGCF[kd_weight=0.001]@1": dict(entry(0.3), config=dict(common, kd_weight=0.001))}
    lines = provenance(results).split("  \n")
    assert "HGCH@1: trained with epochs=1000 (other cells of its seed: not)" in lines
    assert "HyperLLM_HGCH@1: trained with epochs=1000, max_norm=0 (other cells of its seed: not)" in lines
    assert "HGCF_x@1: trained with require_pow=0.0 (other cells of its seed: not)" in lines
    assert not any(line.startswith(("HGCF@1", "HRCF", "HICF", "HyperCL", "RLMRecCon_HGCF")) and "trained with" in line
                   for line in lines)  # the usual settings; a --choose cell's chosen key (its own line says it)


def test_merge_takes_a_cell_that_continues_the_kept_run_and_keeps_any_other(tmp_path):
    import json

    import compare_frameworks

    stamp = {"command": "c", "commit": "abc1234", "date": "2026-12-07 06:00 UTC", "machine": "x86_64, 2 CPUs"}
    kept = dict(entry(0.30), epochs=150, config={"checkpoint_dir": "/w/runs/RLMRecGen_HGCH_2021"}, dataset="ml-100k",
                run=stamp)
    extended = dict(kept, epochs=230, test=entry(0.32)["test"])  # the same run folder, --extend'ed
    other = dict(kept, epochs=400, config={"checkpoint_dir": "/elsewhere/RLMRecGen_HGCH_2021"})
    source = tmp_path / "lane.json"
    for cell, expected in ((other, 0.30), (extended, 0.32)):
        results = {"RLMRecGen_HGCH@2021": dict(kept)}
        source.write_text(json.dumps({"RLMRecGen_HGCH@2021": cell}))
        compare_frameworks.merge_cells(results, source, "ml-100k")
        assert results["RLMRecGen_HGCH@2021"]["test"]["recall@20"] == expected


def test_a_cell_records_the_commit_its_run_started_from_not_one_made_while_it_trained(tmp_path, monkeypatch):
    import json

    import compare_frameworks

    head = {"commit": "aaaaaaa"}
    monkeypatch.setattr(compare_frameworks, "code_commit", lambda: head["commit"])
    monkeypatch.setattr("reproduce_table3.code_commit", lambda: head["commit"])

    def fake_run(model, config, files, dataset):
        head["commit"] = "bbbbbbb"  # a commit made while the run trains
        return {"test_result": entry(0.3)["test"], "best_valid_result": entry(0.2)["test"], "best_valid_score": 0.2,
                "best_epoch": 3, "epochs": 9, "sec_per_epoch": 1.0, "peak_rss_mb": 10.0, "seconds": 9.0}

    monkeypatch.setattr(compare_frameworks, "run_in_subprocess", fake_run)
    out = tmp_path / "fw.json"
    compare_frameworks.main(["--dataset", "ml-100k", "--seeds", "2020", "--backbones", "HGCF", "--frameworks", "Base",
                             "--workdir", str(tmp_path / "work"), "--out", str(out)])
    assert json.loads(out.read_text())["HGCF@2020"]["run"]["commit"] == "aaaaaaa"
