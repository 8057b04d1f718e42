"""The Beauty benchmark driver: a training process that dies is reported, never waited on forever."""
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_driver():
    spec = importlib.util.spec_from_file_location("reproduce_table3", ROOT / "benchmarks" / "reproduce_table3.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_table3"] = module
    spec.loader.exec_module(module)
    return module


def die_without_result(model, config_dict, files, results, dataset):
    os._exit(3)


def put_a_result(model, config_dict, files, results, dataset):
    results.put({"model": model, "files": files})


def test_a_child_that_dies_is_reported_with_its_exit_code():
    driver = load_driver()
    result = driver.run_in_subprocess("HGCF", {}, [], target=die_without_result, poll_seconds=0.2)
    assert "error" in result
    assert "HGCF" in result["error"] and "exit code 3" in result["error"]


def test_a_child_result_comes_back():
    driver = load_driver()
    assert driver.run_in_subprocess("HGCF", {}, ["a.yaml"], target=put_a_result, poll_seconds=0.2) == {
        "model": "HGCF", "files": ["a.yaml"]}


def test_missing_release_skips_cleanly(tmp_path, capsys):
    driver = load_driver()
    assert driver.main(["--data", str(tmp_path), "--out", str(tmp_path / "out.json")]) == 0
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "out.json").exists()


def speed_run(base, structural, hyperllm, backbone="HGCF"):
    return {backbone: {"sec_per_epoch": base},
            f"HyperLLM_{backbone}:Structural": {"sec_per_epoch": structural},
            f"HyperLLM_{backbone}": {"sec_per_epoch": hyperllm}}


def test_speed_table_takes_the_median_of_every_added_cost_estimate():
    driver = load_driver()
    runs = [{**speed_run(1.0, 5.0, 6.0), **speed_run(2.0, 9.0, 7.0, "HyperCL")},
            {**speed_run(2.0, 6.0, 4.0), **speed_run(3.0, 8.0, 12.0, "HyperCL")}]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in driver.speed_table(runs).splitlines()[2:]}
    # HGCF estimates 4, 5, 4, 2 -> median 4; HyperCL 7, 5, 5, 9 -> median 6; s/epoch are medians over runs
    assert rows["HGCF"] == ["1.50", "5.50", "-", "5.00", "+4.00 (4)", "1.00"]
    assert rows["HyperCL"] == ["2.50", "8.50", "-", "9.50", "+6.00 (4)", "1.50"]
    assert set(rows) == {"HGCF", "HyperCL"}


def test_phase1_source_names_what_started_phase_2():
    driver = load_driver()
    given = {"config": {}}  # properties/beauty/HyperLLM_*.yaml say semantic_init: given
    assert driver.phase1_source("HyperLLM_HICF", given) == "released 16_50_0.1"
    assert driver.phase1_source("HICF", given) == "-"
    assert driver.phase1_source("HyperLLM_HICF:Structural", given) == "-"
    own = {"config": {"semantic_init": "moe", "num_experts": 20}, "semantic_input": driver.SEMANTIC_STAND_IN}
    assert driver.phase1_source("HyperLLM_HICF@try", own) == "own phase 1 (K=20, m1=0.1) over released 16_50_0.1"
    assert driver.phase1_source("HyperLLM_HGCF", {"config": {"semantic_init": "moe"}}) == "own phase 1 (K=16, m1=0.1)"


def test_every_benchmark_run_gets_its_own_folder_and_resumes_from_its_own_progress_file(tmp_path):
    driver = load_driver()
    base = {"checkpoint_dir": str(tmp_path / "saved"), "seed": 1}
    hgcf = driver.own_run_folder("HGCF", base, "HGCF@2020")
    meta = driver.own_run_folder("HyperLLM_HGCF", base, "HyperLLM_HGCF-w/o Meta")
    assert Path(hgcf["checkpoint_dir"]) == tmp_path / "saved" / "runs" / "HGCF_2020"
    assert Path(meta["checkpoint_dir"]) == tmp_path / "saved" / "runs" / "HyperLLM_HGCF-w_o_Meta"
    assert "phase1_cache_dir" not in hgcf and "resume_from" not in hgcf  # HGCF has no phase 1; nothing to resume
    assert meta["phase1_cache_dir"] == str(tmp_path / "saved" / "phase1")  # shared: named by content hash
    assert base == {"checkpoint_dir": str(tmp_path / "saved"), "seed": 1}  # the caller's dict is left as it was

    folder = Path(meta["checkpoint_dir"])
    folder.mkdir(parents=True)
    older, newer = folder / "HyperLLM_HGCF-a-last.pth", folder / "HyperLLM_HGCF-b-last.pth"
    older.write_bytes(b"1")
    newer.write_bytes(b"2")
    os.utime(older, (1, 1))
    (tmp_path / "saved" / "runs" / "HGCF_2020").mkdir()
    (tmp_path / "saved" / "runs" / "HGCF_2020" / "HGCF-c-last.pth").write_bytes(b"3")  # another run's file
    assert driver.own_run_folder("HyperLLM_HGCF", base, "HyperLLM_HGCF-w/o Meta")["resume_from"] == str(newer)
    assert "resume_from" not in driver.own_run_folder("HyperLLM_HGCF", base, "HyperLLM_HGCF-w/o Meta", resume=False)
    assert "resume_from" not in driver.own_run_folder("HyperLLM_HGCF", base, "HyperLLM_HGCF-HyperLLM")


def test_replace_text_keeps_the_previous_file_when_writing_fails(tmp_path):
    bench = load_driver()
    out = tmp_path / "results.json"
    bench.save_results(str(out), {"HGCF": 1})
    bench.replace_text(str(out), '{"HGCF": 2}')
    assert out.read_text() == '{"HGCF": 2}'
    try:
        bench.replace_text(str(out), "half written \ud800")  # utf-8 cannot encode it: fails mid-write
    except UnicodeEncodeError:
        pass
    else:
        raise AssertionError("a lone surrogate was written")
    assert out.read_text() == '{"HGCF": 2}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
