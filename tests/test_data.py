"""Atomic files: the converter's id round trip, the tag graph read from files, and bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recbole.data import create_dataset

from conftest import FAST, ROOT
from dataset_tools.from_official import ReleaseError, convert_release
from recbole_hyperllm.atomic import AtomicFileError
from recbole_hyperllm.model.hyperbolic.base import DivergenceError
from recbole_hyperllm.quick_start import check_side_files, create_config, run_recbole_hyperllm
from recbole_hyperllm.utils import get_model


def fake_release(root, n_users=30, n_items=20, seed=0):
    """The authors' layout: three CSR matrices, tag JSON files and a phase-1 output (d = 8)."""
    rng = np.random.default_rng(seed)
    src, phase1 = os.path.join(root, "release", "beauty"), os.path.join(root, "release", "phase1")
    os.makedirs(src), os.makedirs(phase1)
    dense = np.zeros((n_users, n_items))
    for u in range(n_users):  # 5 items per user: 3 train, 1 valid, 1 test
        dense[u, rng.choice(n_items, 5, replace=False)] = rng.permutation([1, 1, 1, 2, 3])
    matrices = {}
    for name, code in (("train_matrix", 1), ("val_matrix", 2), ("test_matrix", 3)):
        matrices[name] = sp.csr_matrix((dense == code).astype(np.float32))
        sp.save_npz(os.path.join(src, f"{name}.npz"), matrices[name])
    tags = {str(t): f"tag {t}" for t in range(6)}
    files = {"id_to_tag": tags, "tag_to_id": {v: k for k, v in tags.items()},
             "tag_to_tag": {"0": [2, 3], "1": [4], "2": [5]},
             "tag_to_item": {str(t): [int(i) for i in rng.choice(n_items, 4, replace=False)] for t in range(6)}}
    for name, content in files.items():
        with open(os.path.join(src, f"{name}.json"), "w") as handle:
            json.dump(content, handle)
    users, items = torch.randn(n_users, 8), torch.randn(n_items, 8)
    torch.save(users, os.path.join(phase1, "beauty_user_3_8_0.1.pt"))
    torch.save(items, os.path.join(phase1, "beauty_item_3_8_0.1.pt"))
    return src, phase1, matrices, files, users, items


def test_converter_ids_map_back_exactly(tmp_path):
    src, phase1, matrices, files, users, items = fake_release(str(tmp_path))
    stats = convert_release(src, str(tmp_path / "data"), "fake", phase1=phase1)
    assert (stats["users"], stats["items"], stats["tag_tag"]) == (30, 20, 4)
    config = create_config("HyperLLM_HGCF", "fake", config_dict=dict(
        FAST, data_path=str(tmp_path / "data"), benchmark_filename=["train", "valid", "test"],
        load_col={"inter": ["user_id", "item_id"]}, semantic_init="given", variant="HyperLLM"))
    dataset = create_dataset(config)
    train, valid, test = dataset.build()
    for part, name in ((train, "train_matrix"), (valid, "val_matrix"), (test, "test_matrix")):
        user_tokens = dataset.id2token("user_id", part.inter_feat["user_id"].numpy()).astype(int)
        item_tokens = dataset.id2token("item_id", part.inter_feat["item_id"].numpy()).astype(int)
        original = matrices[name].tocoo()
        assert sorted(zip(user_tokens, item_tokens)) == sorted(zip(original.row, original.col))
    # tag links and the phase-1 output also map back through the same tokens
    net = get_model("HyperLLM_HGCF")(config, train)
    tag_rows = net.tag_graph.to_dense()[: net.n_tags, net.n_tags:].numpy()  # tags x items, row/col 0 = padding
    linked = {(int(dataset.id2token("item_id", i)), t - 1) for t, i in zip(*np.nonzero(tag_rows)) if t and i}
    known_items = set(dataset.field2token_id["item_id"])
    # tags are numbered from 1 in the order of NAME.tag, which the converter writes sorted by id
    expected = {(i, int(t)) for t, its in files["tag_to_item"].items() for i in its if str(i) in known_items}
    assert linked == expected
    for internal in (1, 7, net.n_users - 1):
        original = users[int(dataset.id2token("user_id", internal))]
        assert torch.allclose(net.backbone.user_embedding[internal], net.manifold.expmap0_capped(original), atol=1e-5)


def test_phase1_vectors_as_semantic_input_feed_this_projects_phase1(tmp_path):
    src, phase1, matrices, files, users, items = fake_release(str(tmp_path))
    with pytest.raises(ReleaseError, match="--phase1"):
        convert_release(src, str(tmp_path / "none"), "fake", phase1_as_semantic=True)
    convert_release(src, str(tmp_path / "data"), "fake", phase1=phase1, phase1_as_semantic=True)
    config = create_config("HyperLLM_HGCF", "fake", config_dict=dict(
        FAST, data_path=str(tmp_path / "data"), benchmark_filename=["train", "valid", "test"],
        load_col={"inter": ["user_id", "item_id"]}, semantic_init="moe", variant="HyperLLM"))
    dataset = create_dataset(config)
    train, _, _ = dataset.build()
    net = get_model("HyperLLM_HGCF")(config, train)
    for internal in (1, 7, net.n_items - 1):
        original = items[int(dataset.id2token("item_id", internal))]
        # the MoE input: the vector mapped onto the hyperboloid and back (the authors' phase1_model.py)
        assert torch.allclose(net.item_semantic[internal], net.manifold.logmap0(net.manifold.expmap0(original)),
                              atol=1e-5)


def test_tag_graph_is_built_from_the_atomic_files(toy):
    tmp_path, config = toy
    config = create_config("HyperLLM_HGCF", "toy", config_dict=config)
    dataset = create_dataset(config)
    net = get_model("HyperLLM_HGCF")(config, dataset.build()[0])
    graph = net.tag_graph.to_dense()
    n_tags = net.n_tags  # 12 tags + padding row
    assert n_tags == 13 and graph.shape == (n_tags + net.n_items,) * 2
    assert torch.allclose(graph.sum(1), torch.ones(graph.size(0)))
    tag_of = {f"t{t}": t + 1 for t in range(12)}
    with open(tmp_path / "toy" / "toy.tagedge") as handle:
        next(handle)
        for line in handle:
            parent, child = line.split()
            assert graph[tag_of[parent], tag_of[child]] > 0 and graph[tag_of[child], tag_of[parent]] > 0


def run_script(tmp_path, *extra):
    cmd = [sys.executable, os.path.join(ROOT, "run_recbole_hyperllm.py"), "--model=HyperLLM_HGCF", "--dataset=toy",
           f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=1", "--meta_epochs=1",
           "--embedding_size=8", "--num_experts=3", "--show_progress=False", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)


def test_missing_tag_file_names_the_file_and_the_fix(toy):
    tmp_path, _ = toy
    os.remove(tmp_path / "toy" / "toy.tagedge")
    out = run_script(tmp_path)
    assert out.returncode == 2
    assert "toy.tagedge not found" in out.stderr and "dataset_tools" in out.stderr
    assert "test result" not in out.stdout + out.stderr


def test_edge_to_unknown_tag_names_file_and_line(toy):
    tmp_path, config = toy
    with open(tmp_path / "toy" / "toy.tagedge", "a") as handle:
        handle.write("t1\tno_such_tag\n")
    n_lines = sum(1 for _ in open(tmp_path / "toy" / "toy.tagedge"))
    with pytest.raises(AtomicFileError, match=rf"toy\.tagedge, line {n_lines}: child_tag_id 'no_such_tag'"):
        run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=config)  # stopped before any training


def test_malformed_header_names_file_and_column(toy):
    tmp_path, config = toy
    path = tmp_path / "toy" / "toy.itemtag"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["item_id:token\ttag_id"] + lines[1:]) + "\n")
    with pytest.raises(AtomicFileError, match=r"toy\.itemtag, line 1: header column 'tag_id'"):
        check_side_files(create_config("HyperLLM_HGCF", "toy", config_dict=config))


def test_missing_semantic_embedding_row_is_reported(toy):
    tmp_path, config = toy
    path = tmp_path / "toy" / "toy.useremb"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # drop the last user
    config = create_config("HyperLLM_HGCF", "toy", config_dict=config)
    with pytest.raises(AtomicFileError, match=r"toy\.useremb: 1 values of user_id have no row"):
        get_model("HyperLLM_HGCF")(config, create_dataset(config).build()[0])


def test_a_non_finite_loss_stops_with_the_term_and_step_and_no_metrics(toy):
    tmp_path, config = toy
    with pytest.raises(DivergenceError, match=r"loss term 'tag' is inf at epoch 0, batch 0"):
        run_recbole_hyperllm("HyperLLM_HGCF", "toy", config_dict=dict(config, variant="Structural",
                                                                       tag_margin=1e38))
    out = run_script(tmp_path, "--variant=Structural", "--tag_margin=1e38")
    assert out.returncode == 2 and "loss term 'tag' is inf at epoch 0, batch 0" in out.stderr
    assert "test result" not in out.stdout + out.stderr
    refused = run_script(tmp_path, "--variant=Base", "--margin=float('nan')")  # refused before any data is read
    assert refused.returncode == 2 and refused.stderr == "error: config key 'margin' is nan; it must be a number > 0\n"
