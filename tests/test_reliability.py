"""Issue 13: no run reads another run's files; bad input stops before training with one line naming it."""
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import ROOT, build_model, write
from recbole_hyperllm.atomic import AtomicFileError, check_interactions
from recbole_hyperllm.config_check import PLUGIN_CODE_KEYS, known_keys, validate_config
from recbole_hyperllm.errors import CheckpointError, ConfigError
from recbole_hyperllm.model import MODELS
from recbole_hyperllm.quick_start import create_config, run_recbole_hyperllm
from recbole_hyperllm.utils import get_trainer


def script(tmp_path, *args, model="HGCF", name="run_recbole_hyperllm.py"):
    cmd = [sys.executable, os.path.join(ROOT, name), f"--model={model}", "--dataset=toy", f"--data_path={tmp_path}",
           f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=1", "--embedding_size=8", "--show_progress=False",
           "--state=ERROR", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)


# ----- runs never share files --------------------------------------------------------------------------------
def test_two_trainers_made_in_the_same_second_get_different_checkpoint_files(toy):
    _, config = toy
    config, net, _ = build_model(dict(config), "HGCF")
    trainer_class = get_trainer(config["MODEL_TYPE"], "HGCF")
    first, second = trainer_class(config, net), trainer_class(config, net)
    assert first.saved_model_file != second.saved_model_file  # RecBole's names are equal within a second
    assert os.path.isabs(first.saved_model_file) and first.progress_file.endswith("-last.pth")


RUN_AND_REPORT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    from recbole_hyperllm.quick_start import run_recbole_hyperllm
    config = json.loads(sys.argv[1])
    result = run_recbole_hyperllm("HGCF", "toy", config_dict=config)
    print("RESULT " + json.dumps({{"checkpoint": result["checkpoint"], "test": result["test_result"]}}))
""")


def test_two_runs_started_together_in_one_folder_each_report_their_own_model(toy):
    tmp_path, config = toy
    driver = tmp_path / "driver.py"
    driver.write_text(RUN_AND_REPORT.format(root=ROOT))
    runs = [subprocess.Popen([sys.executable, str(driver), json.dumps(dict(config, margin=margin, epochs=2))],
                             cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for margin in (0.1, 2.0)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    results = [json.loads(out.split("RESULT ", 1)[1]) for out, _ in outputs]
    assert results[0]["checkpoint"] != results[1]["checkpoint"]
    for margin, result in zip((0.1, 2.0), results):
        saved = torch.load(result["checkpoint"], weights_only=False)
        assert saved["config"]["margin"] == margin  # each run's reported model is the one it trained
    assert not [f for f in os.listdir(tmp_path / "saved") if "partial" in f]
    assert len(os.listdir(tmp_path / "log" / "HGCF")) == 2  # one log file per run


# ----- resume ------------------------------------------------------------------------------------------------
def first_run_in(folder, config, monkeypatch):
    """A 2-epoch HGCF run whose checkpoint folder is relative to ``folder``; its progress file (after epoch 0)."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, checkpoint_dir="saved", epochs=2))
    (progress,) = [folder / "saved" / f for f in os.listdir(folder / "saved") if f.endswith("-last.pth")]
    return progress


def test_a_run_resumed_from_another_folder_completes(toy, monkeypatch):
    tmp_path, config = toy
    progress = first_run_in(tmp_path / "a", config, monkeypatch)
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    resumed = run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, epochs=3, resume_from=str(progress)))
    assert resumed["epochs"] == 3 and resumed["checkpoint"].startswith(str(tmp_path / "a" / "saved"))


def test_a_moved_run_folder_resumes_from_the_best_file_beside_its_progress_file(toy, monkeypatch):
    tmp_path, config = toy
    progress = first_run_in(tmp_path / "a", config, monkeypatch)
    shutil.move(str(tmp_path / "a"), str(tmp_path / "moved"))
    moved = tmp_path / "moved" / "saved" / progress.name
    resumed = run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, epochs=3, resume_from=str(moved)))
    assert resumed["epochs"] == 3 and resumed["checkpoint"].startswith(str(tmp_path / "moved"))


def test_resume_checks_its_files_before_any_data_is_read(toy, monkeypatch):
    tmp_path, config = toy
    progress = first_run_in(tmp_path / "a", config, monkeypatch)
    best = Path(str(progress).replace("-last.pth", ".pth"))
    os.remove(tmp_path / "toy" / "toy.inter")  # anything reaching the data would fail differently

    def resume(path):
        with pytest.raises(CheckpointError) as error:
            run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, resume_from=str(path)))
        return str(error.value)

    assert "is a best-model checkpoint (RecBole's '<model>-<time>.pth'); pass the progress file" in resume(best)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("0123 not a checkpoint")
    assert resume(garbage).startswith(f"resume_from: {garbage} is not a readable torch checkpoint (")
    truncated = tmp_path / "truncated-last.pth"
    truncated.write_bytes(progress.read_bytes()[:1000])
    assert resume(truncated).startswith(f"resume_from: {truncated} is not a readable torch checkpoint (")
    os.remove(best)
    assert re.search(r"the run's best model .*\.pth is missing \(looked there and in .*\); put it beside", resume(progress))
    with pytest.raises(CheckpointError, match=r"is a HGCF run on toy, not HRCF on toy; pass --model=HGCF"):
        run_recbole_hyperllm("HRCF", "toy", config_dict=dict(config, resume_from=str(progress)))


# ----- configuration -----------------------------------------------------------------------------------------
def check(config, model="HGCF", files=None, warn=print):
    validate_config(create_config(model, "toy", config_file_list=files, config_dict=config), files, warn=warn)


@pytest.mark.parametrize("key, value, message", [
    ("margin", -1, "config key 'margin' is -1; it must be a number > 0"),
    ("embedding_size", 1, "config key 'embedding_size' is 1; it must be an integer >= 2"),
    ("epochs", 0, "config key 'epochs' is 0; it must be an integer >= 1"),
    ("epochs", "abc", "config key 'epochs' is 'abc'; it must be an integer >= 1"),
    ("n_layers", 0, "config key 'n_layers' is 0; it must be an integer >= 1"),
    ("learner", "foo", "config key 'learner' is 'foo'; use one of ('adam', 'adamw', 'sgd', 'adagrad', 'rmsprop', "
                       "'sparse_adam', 'rsgd', 'radam')"),
    ("valid_metric", "recall@50", "config key 'valid_metric' names ['recall@50'], which is not computed"),
    ("metrics", ["Recall", "Accuracy"], "config key 'metrics' names ['Accuracy'], which RecBole does not compute"),
    ("seed", "abc", "config key 'seed' is 'abc'; it must be an integer >= 0"),
    ("tag_margin", -1, "config key 'tag_margin' is -1; it must be a number > 0"),
    ("tag_edge_passes", 0, "config key 'tag_edge_passes' is 0; it must be an integer >= 1"),
    ("kar_max_norm", -1.0, "config key 'kar_max_norm' is -1.0; it must be a number >= 0"),
    ("cl_temperature", 0, "config key 'cl_temperature' is 0; it must be a number > 0"),
    ("num_neg", 0, "config key 'num_neg' is 0; it must be an integer >= 1"),
    ("ssl_ratio", 1, "config key 'ssl_ratio' is 1; it must be a number in [0, 1)"),
    ("embedding_space", "foo", "config key 'embedding_space' is 'foo'; use one of ('manifold', 'tangent')"),
    ("benchmark_filename", "[train,valid]", "config key 'benchmark_filename' is '[train,valid]'; it must be a list"),
    ("topk", 0, "RecBole refused the configuration: topk must be a positive integer"),
])
def test_values_that_cannot_train_are_refused(toy, key, value, message):
    _, config = toy
    with pytest.raises(ConfigError) as error:
        check(dict(config, **{key: value}))
    assert str(error.value).startswith(message)


def test_a_dataset_name_with_a_slash_is_refused(toy):
    _, config = toy
    with pytest.raises(ConfigError, match=r"config key 'dataset' is 'toy/': .* \(e.g. --dataset=toy\)"):
        validate_config(create_config("HGCF", "toy/", config_dict=dict(config)))


def test_a_euclidean_learner_on_manifold_points_is_a_warning(toy):
    _, config = toy
    warnings = []
    check(dict(config, learner="adam"), warn=warnings.append)
    assert any(w.startswith("learner 'adam' moves the points off the manifold") for w in warnings)


def test_loose_or_repeated_command_line_arguments_are_refused(toy):
    tmp_path, _ = toy
    loose = script(tmp_path, "--epochs", "1")
    assert loose.returncode == 2 and loose.stderr == ("error: command-line argument '--epochs' is not --key=value; "
                                                      "write e.g. --model=HGCF --epochs=10\n")
    twice = script(tmp_path, "--epochs=2")  # script() already gives --epochs=1
    assert twice.returncode == 2 and "give each --key=value once" in twice.stderr


def test_topk_above_the_number_of_items_is_refused_before_training(toy):
    _, config = toy
    with pytest.raises(ConfigError, match=r"config key 'topk' is \[10, 50\], but the interactions hold 30 items"):
        run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, topk=[10, 50], valid_metric="recall@10"))


def test_a_test_user_without_validation_rows_is_evaluated_under_both_masks(toy):
    tmp_path, config = toy
    folder = tmp_path / "toy"
    rows = (folder / "toy.inter").read_text().splitlines()
    header, body = rows[0], rows[1:]
    parts = {"train": body[0::3] + body[1::3], "valid": [r for r in body[2::6] if not r.startswith("u0\t")],
             "test": body[5::6]}
    for name, lines in parts.items():
        (folder / f"toy.{name}.inter").write_text("\n".join([header] + lines) + "\n")
    result = run_recbole_hyperllm("HGCF", "toy", config_dict=dict(
        config, epochs=1, benchmark_filename=["train", "valid", "test"]))
    assert result["test_result_other_mask"]["test_mask"] == "train" and "recall@20" in result["test_result"]


def test_a_resume_with_other_sizes_names_the_setting(toy, monkeypatch):
    tmp_path, config = toy
    progress = first_run_in(tmp_path / "a", config, monkeypatch)
    with pytest.raises(CheckpointError, match=r"was trained with other settings \(.*\); resume with the interrupted "
                                              r"run's settings"):
        run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, embedding_size=16, resume_from=str(progress)))


@pytest.mark.parametrize("line, message", [
    ("margin choise [0.1]", "'margin choise [0.1]' is not 'key kind values' with kind in"),
    ("margin choice [0.1", "'[0.1' is not a list like [0.1, 0.5]"),
    ("kd_weight choice [0.1]", "'kd_weight' is not read by HGCF, so tuning it changes nothing: it is a key of RLMRecCon"),
])
def test_a_bad_search_space_line_names_file_and_line(toy, line, message):
    from recbole_hyperllm.config_check import check_search_space
    tmp_path, _ = toy
    space = tmp_path / "space.hyper"
    space.write_text(f"margin choice [0.1,0.5]\n{line}\n")
    with pytest.raises(ConfigError) as error:
        check_search_space(str(space), "HGCF", "toy")
    assert str(error.value).startswith(f"{space}, line 2: ") and message in str(error.value)


def test_a_misspelt_key_is_refused_with_the_nearest_key(toy):
    _, config = toy
    with pytest.raises(ConfigError, match=r"^config key 'margn' \(config_dict\) is not read by RecBole, this plugin or "
                                          r"HGCF: did you mean 'margin'\? remove it or fix its name$"):
        check(dict(config, margn=0.5))


def test_a_key_of_another_model_is_a_warning(toy):
    _, config = toy
    warnings = []
    check(dict(config, kd_weight=0.1), warn=warnings.append)
    assert "config key 'kd_weight' (config_dict) is not read by HGCF; it is a key of RLMRecCon" in warnings


def test_recbole_models_keep_recbole_defaults_and_refuse_a_metric_sum(toy):
    _, config = toy
    check(dict(config), model="BPR")
    with pytest.raises(ConfigError, match="a sum of metrics is supported by this plugin's models only"):
        check(dict(config, valid_metric="recall@10+ndcg@10"), model="BPR")


def test_a_yaml_error_names_the_file_and_line(toy):
    tmp_path, config = toy
    bad = tmp_path / "bad.yaml"
    bad.write_text("margin: 0.1\nepochs: [3\nlearner: rsgd\n")
    with pytest.raises(ConfigError, match=rf"^config file {re.escape(str(bad))}, line 3: YAML syntax error"):
        check(dict(config), files=[str(bad)])


def test_an_unwritable_checkpoint_folder_is_refused_before_training(toy):
    tmp_path, config = toy
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"config key 'checkpoint_dir' is .*a-file/saved, which cannot be written"):
        check(dict(config, checkpoint_dir=str(tmp_path / "a-file" / "saved")))


def test_the_run_script_prints_one_line_and_exits_2(toy):
    tmp_path, _ = toy
    out = script(tmp_path, "--margn=0.5")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert out.stderr.startswith("error: config key 'margn' (--margn=... on the command line)")


def test_run_hyper_refuses_to_tune_a_key_the_model_does_not_read(toy):
    tmp_path, _ = toy
    space = tmp_path / "space.hyper"
    space.write_text("margin choice [0.1,0.5]\nmargn choice [1,2]\n")
    out = script(tmp_path, f"--params_file={space}", "--algo=exhaustive", name="run_hyper.py")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr == f"error: {space}, line 2: 'margn' is not read by HGCF, so tuning it changes nothing: " \
                         "did you mean 'margin'? remove the line or fix the key\n"


def test_every_key_the_plugin_reads_is_known():
    """Keys read in code (config["key"], positive(config, "key"), choice(config, "key")) are known to some model,
    so the unknown-key check never refuses a key the plugin uses (PLUGIN_CODE_KEYS lists those without YAML)."""
    pattern = re.compile(r"""(?:config\[|config\.get\(|positive\(config, |choice\(config, )["']([A-Za-z_0-9]+)["']""")
    read = set()
    for folder in ("recbole_hyperllm", "dataset_tools"):
        for path in Path(ROOT, folder).rglob("*.py"):
            read |= set(pattern.findall(path.read_text()))
    known = set(PLUGIN_CODE_KEYS).union(*(known_keys(model, "toy") for model in MODELS))
    assert read and not read - known, sorted(read - known)


# ----- atomic files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    ("", "line 1: empty file"),
    ("user_id:token\titem_id:token\n", ": no interactions after the header; the file is empty"),
    ("user_id:token\tx:token\n1\t2\n", "line 1: no 'item_id:token' column"),
    ("user_id:token\titem_id:token\trating:float\n1\t2\t5\n3 4 5\n", "line 3: 1 column(s) where the header has 3; "
                                                                   "separate the columns with tabs"),
    ("user_id:token\titem_id:token\trating:float\n1\t2\tfive\n", "line 2: rating is not a number: 'five'"),
    ("user_id:token\titem_id:token\n1\t\n", "line 2: item_id is empty"),
    ("user_id:token\titem_id:token\n1 \t2\n", "line 2: user_id '1 ' has spaces around it"),
])
def test_bad_interactions_are_refused_with_file_and_line(tmp_path, content, message):
    path = tmp_path / "x.inter"
    path.write_text(content)
    with pytest.raises(AtomicFileError) as error:
        check_interactions(str(path))
    assert str(error.value).startswith(f"{path}") and message in str(error.value)


def test_repeated_interactions_are_counted_in_a_warning(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text("user_id:token\titem_id:token\n1\t2\n1\t3\n1\t2\n2\t2\n")
    warnings = []
    assert check_interactions(str(path), warn=warnings.append) == {"2", "3"}
    assert warnings == [f"{path}: 1 rows repeat a (user, item) pair of an earlier row; RecBole keeps them (remove "
                        "them unless repeats are meant)"]


def test_a_backbone_run_on_bad_interactions_exits_2_before_training(toy):
    tmp_path, _ = toy
    with open(tmp_path / "toy" / "toy.inter", "a") as handle:
        handle.write("u1 i2 1.0 0\n")
    out = script(tmp_path)
    assert out.returncode == 2 and "toy.inter, line" in out.stderr and "separate the columns with tabs" in out.stderr


def tag_graph(config, caplog):
    from recbole_hyperllm.model.hyperllm import tag_data
    _, net, train = build_model(dict(config), "HGCF")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        graph = tag_data.load_tag_graph(train.dataset)
    return graph, [r.getMessage() for r in caplog.records]


def test_repeated_rows_and_self_loops_of_the_tag_graph_are_dropped_and_counted(toy, caplog):
    tmp_path, config = toy
    clean, warnings = tag_graph(config, caplog)
    assert warnings == []
    folder = tmp_path / "toy"
    for suffix, extra in (("tagedge", "t2\tt8\nt3\tt3\n"), ("itemtag", "i0\tt1\ni0\tt1\n"),
                          ("tag", "t4\tanother name\t2\n")):
        with open(folder / f"toy.{suffix}", "a") as handle:
            handle.write(extra)
    dirty, warnings = tag_graph(config, caplog)
    assert sorted(warnings) == sorted([
        f"{folder / 'toy.tag'}: 1 repeated tag rows dropped (same tag_id and level)",
        f"{folder / 'toy.tagedge'}: 1 tag edges from a tag to itself dropped",
        f"{folder / 'toy.tagedge'}: 1 repeated tag edges dropped",
        f"{folder / 'toy.itemtag'}: 2 repeated item-tag links dropped",
    ])
    for a, b in zip(clean, dirty):  # the graph the loss sees is unchanged
        assert (torch.as_tensor(a) == torch.as_tensor(b)).all()


def test_a_tag_listed_with_two_levels_is_refused(toy, caplog):
    tmp_path, config = toy
    with open(tmp_path / "toy" / "toy.tag", "a") as handle:
        handle.write("t4\ttag number 4\t3\n")
    with pytest.raises(AtomicFileError, match=r"toy\.tag, line 14: tag_id 't4' has tag_level 3.0, but 2.0 on line 6"):
        tag_graph(config, caplog)


def test_item_tag_rows_matching_few_items_are_counted_and_none_refused(toy, caplog):
    tmp_path, config = toy
    path = tmp_path / "toy" / "toy.itemtag"
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows[:4] + [r.replace("\ti", "\tx").replace("i", "other-", 1) for r in rows[4:]]) + "\n")
    _, warnings = tag_graph(config, caplog)
    assert warnings == [f"{path}: only 3 of {len(rows) - 1} rows name an item of the interactions; the others are "
                        "skipped (are the item ids those of this dataset?)"]
    path.write_text("\n".join(rows[:1] + [r.replace("i", "other-", 1) for r in rows[1:]]) + "\n")
    with pytest.raises(AtomicFileError, match=rf"none of its {len(rows) - 1} item_id values is an item"):
        tag_graph(config, caplog)


def test_a_user_listed_twice_in_the_embeddings_is_refused(toy):
    tmp_path, config = toy
    path = tmp_path / "toy" / "toy.useremb"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[3]]) + "\n")
    with pytest.raises(AtomicFileError, match=rf"toy\.useremb, line {len(lines) + 1}: user_id 'u2' already has a row "
                                              "on line 4; keep one row per user_id"):
        build_model(dict(config), "RLMRecCon_HGCF")


def test_a_given_phase1_output_of_the_wrong_width_names_the_file(toy):
    tmp_path, config = toy
    for kind, n in (("user", 40), ("item", 30)):
        prefix = "u" if kind == "user" else "i"
        write(str(tmp_path / "toy" / f"toy.{kind}init"), [f"{kind}_id:token", f"{kind}_init:float_seq"],
              [(f"{prefix}{k}", " ".join(["0.01"] * 5)) for k in range(n)])
    with pytest.raises(AtomicFileError, match=r"toy\.userinit: rows hold 5 values, but embedding_size 8 needs 8; "
                                              r"run with --embedding_size=5 or remake the file"):
        build_model(dict(config, semantic_init="given"), "HyperLLM_HGCF")


def test_a_truncated_phase1_cache_is_recomputed(toy, caplog):
    import logging as log
    from test_end_to_end import build
    from recbole_hyperllm.phase1 import run_phase1
    config = dict(toy[1])
    cfg, net, train, valid, _ = build(dict(config))
    first = run_phase1(cfg, net, train, valid, log.getLogger("test"))
    cache = first[2]["cache"]
    Path(cache).write_bytes(Path(cache).read_bytes()[:500])
    cfg, net, train, valid, _ = build(dict(config))
    with caplog.at_level(log.WARNING):
        again = run_phase1(cfg, net, train, valid, log.getLogger("test"))
    assert not again[2]["reused"] and f"phase 1: the cache {cache} cannot be read (" in caplog.text
    assert torch.load(cache, weights_only=True)["user"].shape == first[0].shape  # replaced by a whole file


def test_the_headline_command_without_its_data_names_the_folder_and_how_to_make_it(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "run_recbole_hyperllm.py"), "--model=HyperLLM_HGCF",
           "--dataset=Amazon_Toys", f"--checkpoint_dir={tmp_path / 'saved'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert out.stderr.startswith("error: dataset/Amazon_Toys/Amazon_Toys.inter not found: no interactions for dataset "
                                 "'Amazon_Toys' in dataset/Amazon_Toys; make it with `python -m dataset_tools.amazon`")


@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_cl_chunk_size_when_set_is_a_positive_integer(value):
    from recbole_hyperllm.config_check import PLUGIN_RULES

    with pytest.raises(ConfigError, match=f"config key 'cl_chunk_size' is {value!r}; it must be an integer >= 1"):
        PLUGIN_RULES["cl_chunk_size"]({"cl_chunk_size": value}, "cl_chunk_size")


def test_a_positive_number_refuses_nan_and_names_the_key():
    from recbole_hyperllm.errors import positive

    with pytest.raises(ConfigError, match="config key 'kd_temperature' is nan; it must be a number > 0"):
        positive({"kd_temperature": float("nan")}, "kd_temperature")
    assert positive({"w": None}, "w", allow_zero=True, default=0.0) == 0.0
