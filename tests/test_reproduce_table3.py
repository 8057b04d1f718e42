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
