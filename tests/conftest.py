"""Shared fixtures: a tiny synthetic dataset with tags and semantic embeddings, built in code."""
import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write(path, header, rows):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(header) + "\n")
        for row in rows:
            handle.write("\t".join(str(v) for v in row) + "\n")


def make_synthetic(root, name="toy", n_users=40, n_items=30, n_tags=12, semantic_dim=8, seed=0):
    """Users with 6-10 items each, a 3-level tag tree, tag-item links and random semantic vectors."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, size=rng.integers(6, 11), replace=False):
            rows.append((f"u{u}", f"i{i}", 1.0, len(rows)))
    write(os.path.join(folder, f"{name}.inter"), ["user_id:token", "item_id:token", "rating:float", "timestamp:float"], rows)
    levels = [1] * 2 + [2] * 4 + [3] * (n_tags - 6)
    write(os.path.join(folder, f"{name}.tag"), ["tag_id:token", "tag_name:token", "tag_level:float"],
          [(f"t{t}", f"tag number {t}", levels[t]) for t in range(n_tags)])
    edges = [(f"t{p}", f"t{c}") for c in range(2, 6) for p in [c % 2]] + \
            [(f"t{2 + c % 4}", f"t{c}") for c in range(6, n_tags)]
    write(os.path.join(folder, f"{name}.tagedge"), ["parent_tag_id:token", "child_tag_id:token"], edges)
    links = sorted({(f"i{i}", f"t{t}") for i in range(n_items) for t in rng.choice(n_tags, size=3, replace=False)})
    write(os.path.join(folder, f"{name}.itemtag"), ["item_id:token", "tag_id:token"], links)
    for kind, n in (("user", n_users), ("item", n_items)):
        prefix = "u" if kind == "user" else "i"
        vectors = rng.normal(size=(n, semantic_dim)).astype(np.float32)
        write(os.path.join(folder, f"{name}.{kind}emb"), [f"{kind}_id:token", f"{kind}_emb:float_seq"],
              [(f"{prefix}{k}", " ".join(f"{v:.6f}" for v in vectors[k])) for k in range(n)])
    return folder


FAST = {
    "epochs": 2, "meta_epochs": 2, "embedding_size": 8, "num_experts": 3, "train_batch_size": 64,
    "show_progress": False, "eval_batch_size": 100000, "state": "ERROR", "reproducibility": True,
}


@pytest.fixture
def toy(tmp_path):
    make_synthetic(str(tmp_path))
    config = dict(FAST, data_path=str(tmp_path), checkpoint_dir=str(tmp_path / "saved"))
    return tmp_path, config


def build_model(config_dict, model, dataset="toy"):
    """(config, model, train data) of a plugin model on ``dataset``, seeded."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hyperllm.quick_start import create_config
    from recbole_hyperllm.utils import get_model

    config = create_config(model, dataset, config_dict=config_dict)
    init_seed(config["seed"], True)
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, get_model(model)(config, train.dataset), train


def backbone_of(net):
    """The backbone of a HyperLLM model, or the model itself."""
    return getattr(net, "backbone", net)


def embedding_params(net):
    """The user, item (and, for HyperLLM, tag) embeddings of a model."""
    backbone = backbone_of(net)
    tags = (net.tag_embedding,) if hasattr(net, "tag_embedding") else ()
    return (backbone.user_embedding, backbone.item_embedding) + tags


def assert_loss_terms(net, batch, names):
    """``calculate_loss`` gives finite scalar terms named ``names``; returns them."""
    losses = net.calculate_loss(batch)
    assert net.last_loss_names == names and len(losses) == len(names)
    assert all(torch.isfinite(term) and term.dim() == 0 for term in losses)
    return losses


def assert_gradients_reach_embeddings(net, losses):
    sum(losses).backward()
    for param in embedding_params(net):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def assert_phase1_trains_only_the_moe(net, batch, names):
    """After ``enter_meta_phase`` only ``moe.*`` is trainable, the terms are ``names`` and only the MoE gets
    gradients; returns the terms."""
    net.enter_meta_phase()
    for name, param in net.named_parameters():
        assert param.requires_grad == name.startswith("moe."), name
    losses = net.calculate_loss(batch)
    assert net.last_loss_names == names and all(torch.isfinite(t) for t in losses)
    sum(losses).backward(retain_graph=True)
    assert all(p.grad is None for n, p in net.named_parameters() if not n.startswith("moe."))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.moe.parameters())
    return losses
