"""HRCF and HICF backbones, alone and inside HyperLLM: loss terms, gradients, phase 1, their formulas on
hand-made tensors; and a short run of every new backbone and its HyperLLM variant."""
import math

import pytest
import torch
from conftest import (assert_gradients_reach_embeddings, assert_loss_terms, assert_phase1_trains_only_the_moe, build_model,
                      embedding_params)

from recbole_hyperllm.losses import margin_ranking_loss
from recbole_hyperllm.manifold import LorentzBall, sqdist_pairs
from recbole_hyperllm.model.hyperbolic.hicf import adaptive_margin_weight, informative_negatives
from recbole_hyperllm.model.hyperbolic.hrcf import PSI_EPS, hrcf_geometric_regulariser
from recbole_hyperllm.quick_start import run_recbole_hyperllm

TERMS = {
    "HRCF": ("rank", "hrcf_reg"),
    "HICF": ("rank",),
    "HyperLLM_HRCF": ("rank", "hrcf_reg", "tag", "cl"),
    "HyperLLM_HICF": ("rank", "tag", "cl"),
}


@pytest.mark.parametrize("model", list(TERMS))
def test_loss_terms_are_finite_and_reach_the_embeddings(toy, model):
    _, config = toy
    config, net, train = build_model(dict(config, num_neg=3), model)
    losses = assert_loss_terms(net, next(iter(train)), TERMS[model])
    assert_gradients_reach_embeddings(net, losses)


@pytest.mark.parametrize("model", ["HyperLLM_HRCF", "HyperLLM_HICF"])
def test_phase1_freezes_every_backbone_parameter(toy, model):
    _, config = toy
    config, net, train = build_model(dict(config, num_neg=3), model)
    names = [name for name, _ in net.named_parameters()]
    assert {"backbone.user_embedding", "backbone.item_embedding"} <= set(names)
    expected = ("rank", "hrcf_reg") if model.endswith("HRCF") else ("rank",)
    assert_phase1_trains_only_the_moe(net, next(iter(train)), expected)


@pytest.mark.parametrize("model", list(TERMS) + ["HGCH", "HyperLLM_HGCH", "HyperCL", "HyperLLM_HyperCL"])
def test_two_epoch_run_reports_metrics(toy, model):
    _, config = toy
    result = run_recbole_hyperllm(model, "toy", config_dict=dict(config, num_neg=3, learning_rate=0.01))
    assert set(result["test_result"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    assert result["epochs"] == 2


# ----- formulas on hand-made tensors -------------------------------------------------

def points(tangent_rows):
    """Points of the hyperboloid exp_0((0, v)) for the given spatial tangent rows (no cap)."""
    v = torch.tensor(tangent_rows, dtype=torch.float64)
    tangent = torch.cat([torch.zeros(v.size(0), 1, dtype=v.dtype), v], dim=1)
    return LorentzBall(max_norm=None).expmap0(tangent, project=True), tangent


def test_hrcf_regulariser_and_root_alignment_match_direct_computation(toy):
    rows = [[0.3, -0.4], [1.0, 0.0], [0.0, 0.2], [-0.5, 0.5]]
    out, _ = points(rows)
    norms_sq = [r[0] ** 2 + r[1] ** 2 for r in rows]            # ||log_0(h)||^2 = ||v||^2
    expected = 1.0 / math.sqrt(sum(norms_sq) / len(rows) + PSI_EPS)
    assert hrcf_geometric_regulariser(out).item() == pytest.approx(expected, rel=1e-9)

    _, config = toy
    _, net, train = build_model(dict(config, hrcf_alpha=7.0), "HRCF")
    # root alignment: with the identity graph, the L-layer sum is L * x, centred over the nodes
    n = net.n_users + net.n_items
    x = torch.zeros(n, net.embedding_size)
    x[:, 1:] = 0.01 * torch.randn(n, net.embedding_size - 1)
    eye = torch.sparse_coo_tensor(torch.arange(n).repeat(2, 1), torch.ones(n), (n, n)).coalesce()
    got = net.manifold.logmap0(net.propagate(x, eye))
    want = net.n_layers * x - (net.n_layers * x).mean(dim=0, keepdim=True)
    assert torch.allclose(got, want, atol=1e-5) and got.mean(dim=0).abs().max() < 1e-5
    # the loss term: alpha / psi over the items of the propagated graph, padding item excluded
    out = net.forward()
    items = net.manifold.logmap0(out[net.n_users + 1:])
    direct = 7.0 / torch.sqrt(items.pow(2).sum(dim=1).mean() + PSI_EPS)
    term = net.extra_losses(out, next(iter(train)), None)["hrcf_reg"]
    assert term.item() == pytest.approx(direct.item(), rel=1e-4)


def test_hicf_adaptive_margin_and_informative_negative_match_direct_computation(toy):
    # adaptive margin weight for a = exp_0(0.3 e1), p = exp_0(0.5 e2): <a, p>_L = -cosh(0.3) cosh(0.5)
    hp, _ = points([[0.3, 0.0], [0.0, 0.5]])
    a0, p0 = math.cosh(0.3), math.cosh(0.5)
    score = 1.0 + a0 * p0 - a0 - p0
    expected = 1.0 / (1.0 + math.exp(score / (a0 * p0)))        # sigmoid(-score / (a0 p0))
    assert adaptive_margin_weight(hp[:1], hp[1:]).item() == pytest.approx(expected, rel=1e-9)

    # informative negative: the candidate whose point is nearest (Euclidean) to the positive item
    out, _ = points([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [0.2, 0.9], [1.2, 0.1]])
    positives = torch.tensor([1, 4])
    candidates = torch.tensor([[3, 4, 2], [5, 2, 3]])
    chosen = informative_negatives(out, positives, candidates)
    direct = [min(c.tolist(), key=lambda j: float(((out[j] - out[p]) ** 2).sum())) for p, c in zip(positives, candidates)]
    assert chosen.tolist() == direct == [2, 2]  # 2 is the nearest candidate to both positives

    _, config = toy
    _, net, train = build_model(dict(config, num_neg=4), "HICF")
    anchors = torch.tensor([3, 0])  # off the origin (w != 1/2) and at the origin (w = 1/2)
    loss = net.pair_loss(out, anchors, positives, candidates, 0.7)
    a, p, j = out[anchors], out[positives], out[torch.tensor(direct)]
    by_hand = torch.clamp_min(sqdist_pairs(a, p) - sqdist_pairs(a, j) + 0.7 * adaptive_margin_weight(a, p), 0).sum()
    assert by_hand > 0 and loss.item() == pytest.approx(by_hand.item(), rel=1e-9)
    # one negative per triple (the tag-graph form): the same adaptive-margin loss
    single = net.pair_loss(out, anchors, positives, torch.tensor(direct), 0.7)
    assert single.item() == pytest.approx(by_hand.item(), rel=1e-9)
    assert single.item() != pytest.approx(margin_ranking_loss(a, p, j, 0.7).item())

    # candidates: num_neg real items per pair, never a training interaction of the user
    batch = next(iter(train))
    users = batch[net.USER_ID]
    drawn = net.negative_candidates(users, batch[net.NEG_ITEM_ID])
    assert drawn.shape == (users.size(0), 4) and drawn.min() >= 1 and drawn.max() < net.n_items
    assert not torch.isin(users.unsqueeze(1) * net.n_items + drawn, net.train_pair_keys).any()
    # the accelerator path (no host synchronisation) keeps the same guarantee
    first = torch.randint(1, net.n_items, (users.size(0), 4))
    synced = net.redraw_without_sync(first, users.unsqueeze(1) * net.n_items, batch[net.NEG_ITEM_ID])
    assert synced.shape == first.shape and synced.min() >= 1 and synced.max() < net.n_items
    assert not torch.isin(users.unsqueeze(1) * net.n_items + synced, net.train_pair_keys).any()
    # the binary search both paths use answers as torch.isin does (keys below, among and above the known ones)
    keys = torch.randint(-5, net.n_users * net.n_items + 5, (2000,))
    keys[:50] = net.train_pair_keys[torch.randint(0, net.train_pair_keys.numel(), (50,))]
    assert torch.equal(net.is_training_pair(keys), torch.isin(keys, net.train_pair_keys))


@pytest.mark.parametrize("model,key,other", [("HyperLLM_HRCF", "hrcf_alpha", 5.0), ("HyperLLM_HICF", "num_neg", 7)])
def test_phase1_cache_key_depends_on_the_backbone_loss_settings(toy, model, key, other):
    from recbole_hyperllm.phase1 import cache_key
    _, config = toy
    config1, net1, train1 = build_model(dict(config), model)
    config2, net2, train2 = build_model(dict(config, **{key: other}), model)
    assert cache_key(config1, net1, train1) != cache_key(config2, net2, train2)


@pytest.mark.parametrize("backbone", ["HICF", "HyperCL"])
def test_wo_meta_divergence_stops_with_the_term_and_step(toy, backbone):
    """The paper's "w/o Meta" runs of HICF and HyperCL go to NaN in the first epoch (Table 4).
    Here a huge learning rate forces the same: the run must stop with DivergenceError naming
    the loss term, epoch and batch, and never return metrics."""
    from recbole_hyperllm.model.hyperbolic.base import DivergenceError
    _, config = toy
    config = dict(config, variant="HyperLLM", ablation="wo_meta", semantic_init="moe",
                  learning_rate=1e30, epochs=3)
    with pytest.raises(DivergenceError, match=r"loss term '(rank|tag|cl|ssl)' is (nan|inf|-inf) at epoch 0, batch [1-9]\d*"):
        run_recbole_hyperllm(f"HyperLLM_{backbone}", "toy", config_dict=config)


@pytest.mark.parametrize("model", ["HyperLLM_HGCF", "HyperLLM_HGCH", "HyperLLM_HyperCL"])
def test_tangent_embedding_space_gives_the_same_model_with_euclidean_parameters(toy, model):
    """``embedding_space: tangent`` stores log_0 of the same initial points: same propagation and losses,
    plain parameters (any RecBole optimiser can train them), gradients reach them."""
    _, config = toy
    _, on_manifold, train = build_model(dict(config, num_neg=3), model)
    _, in_tangent, _ = build_model(dict(config, num_neg=3, embedding_space="tangent", learner="adam"), model)
    batch = next(iter(train))
    for param in embedding_params(in_tangent):
        assert type(param) is torch.nn.Parameter
    for param in embedding_params(on_manifold):
        assert type(param) is not torch.nn.Parameter  # geoopt's ManifoldParameter
    torch.testing.assert_close(in_tangent.forward(), on_manifold.forward(), atol=1e-5, rtol=1e-4)
    names = ("rank", "ssl", "tag", "cl") if model.endswith("HyperCL") else ("rank", "tag", "cl")
    torch.manual_seed(0)
    expected = assert_loss_terms(on_manifold, batch, names)
    torch.manual_seed(0)
    got = assert_loss_terms(in_tangent, batch, names)
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), atol=1e-4, rtol=1e-4)
    assert_gradients_reach_embeddings(in_tangent, got)


def test_unknown_embedding_space_is_named(toy):
    _, config = toy
    with pytest.raises(ValueError, match="embedding_space"):
        build_model(dict(config, embedding_space="ball"), "HGCF")
