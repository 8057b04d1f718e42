import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import ROOT
from recbole_hyperllm.errors import CheckpointError
from recbole_hyperllm.phase1 import run_phase1
from recbole_hyperllm.quick_start import create_config, run_recbole_hyperllm, use_test_protocol
from recbole_hyperllm.utils import get_model


def build(config_dict, model="HyperLLM_HGCF"):
    config = create_config(model, "toy", config_dict=config_dict)
    init_seed(config["seed"], True)
    train, valid, test = data_preparation(config, create_dataset(config))
    net = get_model(model)(config, train.dataset)
    return config, net, train, valid, test


def test_hgcf_on_bundled_ml100k_trains_and_reports_metrics(tmp_path):
    from recbole_hyperllm.atomic import AtomicFileError
    config = {"epochs": 1, "show_progress": False, "state": "ERROR", "checkpoint_dir": str(tmp_path),
              "data_path": str(tmp_path)}
    with pytest.raises(AtomicFileError, match="no interactions for dataset 'ml-100k'.*dataset_tools prepare ml-100k"):
        run_recbole_hyperllm("HGCF", "ml-100k", config_dict=config)  # the data are made by an explicit step
    from dataset_tools.default_data import prepare_inputs
    result = run_recbole_hyperllm("HGCF", "ml-100k", config_dict=prepare_inputs("HGCF", "ml-100k", None, config))
    assert sorted(os.listdir(tmp_path / "ml-100k"))[:2] == ["llm", "ml-100k.inter"]  # split made, no tags needed
    assert set(result["test_result"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0
    assert result["best_epoch"] == 0 and result["epochs"] == 1
    other = result["test_result_other_mask"]
    assert result["test_mask"] == "train_valid" and other["test_mask"] == "train"
    assert set(other) == {"test_mask", "recall@10", "recall@20", "ndcg@10", "ndcg@20"}


def test_phase1_trains_only_the_moe(toy):
    _, config = toy
    config, net, train, valid, _ = build(config)
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not n.startswith("moe.")}
    moe_before = {n: p.detach().clone() for n, p in net.moe.named_parameters()}
    import logging
    run_phase1(config, net, train, valid, logging.getLogger("test"))
    for name, param in net.named_parameters():
        if not name.startswith("moe."):
            assert torch.equal(param, frozen[name]), f"{name} changed during phase 1"
    assert any(not torch.equal(p, moe_before[n]) for n, p in net.moe.named_parameters())


def test_phase1_output_is_cached_and_reused(toy):
    _, config = toy
    import logging
    config, net, train, valid, _ = build(config)
    first = run_phase1(config, net, train, valid, logging.getLogger("test"))
    config2, net2, train2, valid2, _ = build(dict(toy[1]))
    second = run_phase1(config2, net2, train2, valid2, logging.getLogger("test"))
    assert not first[2]["reused"] and second[2]["reused"]
    assert first[2]["cache"] == second[2]["cache"]
    assert torch.equal(first[0].cpu(), second[0].cpu()) and torch.equal(first[1].cpu(), second[1].cpu())
    config3, net3, train3, valid3, _ = build(dict(toy[1], meta_margin=0.3))  # another m1: another key
    assert run_phase1(config3, net3, train3, valid3, logging.getLogger("test"))[2]["cache"] != first[2]["cache"]


def test_phase2_starts_from_the_moe_outputs(toy):
    _, config = toy
    import logging
    config, net, train, valid, _ = build(config)
    user_t, item_t, _ = run_phase1(config, net, train, valid, logging.getLogger("test"))
    net.initialise_id_embeddings(user_t, item_t)
    assert torch.allclose(net.backbone.user_embedding, net.manifold.expmap0_capped(user_t), atol=1e-6)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert "backbone.user_embedding" in trainable and "tag_embedding" in trainable
    assert not any(n.startswith("moe.") for n in trainable) and "backbone.manifold.k" not in trainable


@pytest.mark.parametrize("variant,ablation,terms", [
    ("Base", "none", ("rank",)),
    ("Structural", "none", ("rank", "tag", "cl")),
    ("HyperLLM", "wo_cl", ("rank", "tag")),
    ("HyperLLM", "wo_meta", ("rank", "tag", "cl")),
])
def test_variants_switch_loss_terms(toy, variant, ablation, terms):
    _, config = toy
    config, net, train, _, _ = build(dict(config, variant=variant, ablation=ablation))
    batch = next(iter(train))
    losses = net.calculate_loss(batch)
    assert net.last_loss_names == terms and len(losses) == len(terms)
    assert net.plan.joint_moe == (ablation == "wo_meta")


def test_both_phases_end_to_end_through_the_run_script(toy):
    tmp_path, config = toy
    cmd = [sys.executable, os.path.join(ROOT, "run_recbole_hyperllm.py"), "--model=HyperLLM_HGCF", "--dataset=toy",
           f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=2", "--meta_epochs=2",
           "--embedding_size=8", "--num_experts=3", "--train_batch_size=64", "--show_progress=False"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "phase 1: training the MoE" in log and "test result" in log
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert again.returncode == 0 and "phase 1: reusing" in again.stdout + again.stderr


def test_authors_test_protocol_masks_only_training_items(toy):
    _, config = toy
    _, _, _, valid, test = build(dict(config))
    default = [set(h.tolist()) for h in test.uid2history_item[1:4]]
    use_test_protocol({"test_mask": "train"}, valid, test)
    authors = [set(h.tolist()) for h in test.uid2history_item[1:4]]
    assert all(a <= d for a, d in zip(authors, default)) and any(a < d for a, d in zip(authors, default))


def test_run_hyper_tries_each_point_of_a_search_space(toy):
    tmp_path, _ = toy
    space = tmp_path / "space.hyper"
    space.write_text("margin choice [0.1,0.5]\n")
    result = tmp_path / "hyper.txt"
    cmd = [sys.executable, os.path.join(ROOT, "run_hyper.py"), "--model=HyperLLM_HGCF", "--dataset=toy",
           f"--params_file={space}", f"--output_file={result}", "--algo=exhaustive", f"--data_path={tmp_path}",
           f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=1", "--meta_epochs=1", "--embedding_size=8",
           "--num_experts=3", "--show_progress=False"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = result.read_text()
    assert "margin:0.1" in text and "margin:0.5" in text and "recall@20" in text


def test_an_interrupted_run_resumes_from_its_progress_checkpoint(toy, monkeypatch):
    import shutil

    from recbole_hyperllm.trainer import HyperbolicTrainer

    tmp_path, config = toy
    interrupted = tmp_path / "interrupted-last.pth"
    save = HyperbolicTrainer.save_progress

    def save_and_keep_the_first(trainer, next_epoch):  # the file a crash during epoch 1 would leave
        save(trainer, next_epoch)
        if next_epoch == 1:
            shutil.copy(trainer.progress_file, interrupted)

    monkeypatch.setattr(HyperbolicTrainer, "save_progress", save_and_keep_the_first)
    first = run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, epochs=2))
    progress = [p for p in os.listdir(tmp_path / "saved") if p.endswith("-last.pth")]
    assert len(progress) == 1
    finished = torch.load(tmp_path / "saved" / progress[0], weights_only=False)
    assert finished["next_epoch"] == 2 and len(finished["valid_results"]) == 2  # a finished run keeps its history
    state = torch.load(interrupted, weights_only=False)
    assert state["next_epoch"] == 1 and len(state["valid_history"]) == 1  # the state after epoch 0
    state["best_valid_score"] = 123.0  # a score no run reaches: proves the state was restored
    torch.save(state, interrupted)
    monkeypatch.setattr(HyperbolicTrainer, "save_progress", save)
    resumed = run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, epochs=3, resume_from=str(interrupted)))
    assert resumed["best_valid_score"] == 123.0
    assert resumed["epochs"] == 3  # epoch 0 from the checkpoint, epochs 1 and 2 trained now
    assert first["epochs"] == 2 and set(resumed["test_result"]) == set(first["test_result"])
    with pytest.raises(CheckpointError, match="resume_from: .*nothing.pth not found"):
        run_recbole_hyperllm("HGCF", "toy", config_dict=dict(config, resume_from=str(tmp_path / "nothing.pth")))


def test_hyperllm_on_ml100k_runs_offline_from_a_fresh_folder(tmp_path):
    """The README's default command: tags/summaries (metadata provider) and MiniLM embeddings made on first use."""
    command = [sys.executable, os.path.join(ROOT, "run_recbole_hyperllm.py"), "--model=HyperLLM_HGCF",
               "--dataset=ml-100k", f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}",
               "--epochs=1", "--meta_epochs=1", "--show_progress=False", "--state=ERROR"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "metadata provider" in done.stderr
    folder = tmp_path / "ml-100k"
    for suffix in ("train.inter", "valid.inter", "test.inter", "tag", "tagedge", "itemtag", "itememb", "useremb"):
        assert (folder / f"ml-100k.{suffix}").is_file(), suffix
    # another framework over another backbone, the same command, reading the same inputs
    done = subprocess.run([a.replace("HyperLLM_HGCF", "RLMRecCon_HGCH") for a in command], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0 and "metadata provider" not in done.stderr, done.stderr[-2000:]
    # the user summaries were built from this split only; a run that splits by itself is refused
    from recbole_hyperllm.atomic import AtomicFileError
    from dataset_tools.default_data import check_user_summaries_split
    check_user_summaries_split(str(folder), "ml-100k", ["train", "valid", "test"])
    with pytest.raises(AtomicFileError, match="benchmark_filename"):
        check_user_summaries_split(str(folder), "ml-100k", None)
    with open(folder / "ml-100k.train.inter", "a") as handle:
        handle.write("1\t2\t5\t0\n")
    with pytest.raises(AtomicFileError, match="another training split"):
        check_user_summaries_split(str(folder), "ml-100k", ["train", "valid", "test"])


@pytest.mark.parametrize("space", sorted(p.name for p in (Path(ROOT) / "hyper").glob("*.hyper")))
def test_shipped_search_spaces_name_keys_their_model_knows(toy, space):
    """Every line of hyper/<Model>.hyper (or hyper/<Framework>.hyper, for the framework over any backbone,
    checked over HGCF) is ``key choice [...]`` over a key of that model's YAML."""
    from recbole_hyperllm.model import FRAMEWORKS
    _, config = toy
    model = space[: -len(".hyper")]
    model = f"{model}_HGCF" if model in FRAMEWORKS else model
    known = create_config(model, "toy", config_dict=dict(config))
    for line in (Path(ROOT) / "hyper" / space).read_text().splitlines():
        key, kind, values = line.split(maxsplit=2)
        assert kind == "choice" and isinstance(eval(values), list), line
        assert known[key] is not None, f"{space}: {key} is not a config key of {model}"


def test_phase2_does_not_depend_on_whether_phase1_was_trained_or_read_from_its_cache(toy):
    _, config = toy
    trained = run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(config))
    cached = run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(config))
    assert not trained["phase1"]["reused"] and cached["phase1"]["reused"]
    assert cached["test_result"] == trained["test_result"] and cached["best_valid_score"] == trained["best_valid_score"]


def test_an_interrupted_phase_1_resumes_from_its_progress_file(toy, monkeypatch):
    """Phase 1 writes its own progress file (phase 'meta'); resume_from it continues phase 1 where it stopped,
    then phase 2 runs from the start."""
    import shutil

    from recbole_hyperllm.trainer import Phase1Trainer

    tmp_path, config = toy
    interrupted = tmp_path / "interrupted-phase1-last.pth"
    save = Phase1Trainer.save_progress

    def save_and_keep_the_first(trainer, next_epoch):  # the file a crash during phase 1's epoch 1 would leave
        save(trainer, next_epoch)
        if next_epoch == 1:
            shutil.copy(trainer.progress_file, interrupted)

    monkeypatch.setattr(Phase1Trainer, "save_progress", save_and_keep_the_first)
    first = run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(config, epochs=1, meta_epochs=2))
    assert first["phase1"]["epochs"] == 2 and not first["phase1"]["reused"]
    assert any(p.endswith("-phase1-last.pth") for p in os.listdir(tmp_path / "saved"))
    state = torch.load(interrupted, weights_only=False)
    assert state["phase"] == "meta" and state["next_epoch"] == 1 and len(state["valid_history"]) == 1
    state["best_valid_score"] = 123.0  # a score no run reaches: proves the state was restored
    torch.save(state, interrupted)
    monkeypatch.setattr(Phase1Trainer, "save_progress", save)
    resumed = run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(
        config, epochs=1, meta_epochs=3, resume_from=str(interrupted), phase1_cache_dir=str(tmp_path / "fresh")))
    assert resumed["phase1"]["best_valid_score"] == 123.0 and not resumed["phase1"]["reused"]
    assert resumed["phase1"]["epochs"] == 3  # epoch 0 from the file, epochs 1 and 2 trained now
    assert resumed["epochs"] == 1 and set(resumed["test_result"]) == set(first["test_result"])  # phase 2 from the start
    with pytest.raises(CheckpointError, match="phase-1 progress file, but this HyperLLM_HGCF has no phase 1"):
        run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(
            config, variant="Structural", resume_from=str(interrupted)))
