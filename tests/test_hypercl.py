"""HyperCL backbone, alone and inside HyperLLM: loss terms, gradients, phase 1, a short run, and its
contrastive loss, fully hyperbolic aggregation and edge dropout on hand-made tensors."""
import math

import pytest
import torch
from conftest import assert_gradients_reach_embeddings, assert_loss_terms, assert_phase1_trains_only_the_moe, backbone_of, build_model

from recbole_hyperllm.manifold import LorentzBall, minkowski_inner
from recbole_hyperllm.model.hyperbolic.hypercl import hypercl_ssl_loss, lorentz_centroid_normalise, symmetric_normalised

TERMS = {"HyperCL": ("rank", "ssl"), "HyperLLM_HyperCL": ("rank", "ssl", "tag", "cl")}


@pytest.mark.parametrize("model", list(TERMS))
def test_loss_terms_are_finite_and_reach_the_embeddings(toy, model):
    _, config = toy
    config, net, train = build_model(dict(config, ssl_reg=0.5), model)
    losses = assert_loss_terms(net, next(iter(train)), TERMS[model])
    backbone = backbone_of(net)
    # the SSL term alone reaches the user and item embeddings
    ssl = losses[net.last_loss_names.index("ssl")]
    assert ssl > 0
    grads = torch.autograd.grad(ssl, [backbone.user_embedding, backbone.item_embedding], retain_graph=True)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert_gradients_reach_embeddings(net, losses)


def test_rank_term_and_scores_are_hgcf(toy):
    _, config = toy
    _, hgcf, train = build_model(dict(config), "HGCF")
    _, hypercl, _ = build_model(dict(config), "HyperCL")
    assert [n for n, _ in hypercl.named_parameters()] == [n for n, _ in hgcf.named_parameters()]  # no new weights
    hypercl.load_state_dict(hgcf.state_dict())
    batch = next(iter(train))
    assert torch.equal(hypercl.forward(), hgcf.forward())
    assert hypercl.calculate_loss(batch)[0].item() == pytest.approx(hgcf.calculate_loss(batch)[0].item(), rel=1e-6)


def test_phase1_freezes_every_backbone_parameter(toy):
    _, config = toy
    config, net, train = build_model(dict(config), "HyperLLM_HyperCL")
    losses = assert_phase1_trains_only_the_moe(net, next(iter(train)), ("rank", "ssl"))
    # the SSL views are built from the phase-1 inputs (MoE outputs): the SSL term alone trains the MoE
    grads = torch.autograd.grad(losses[1], list(net.moe.parameters()), retain_graph=True, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_phase1_cache_key_depends_on_the_ssl_settings(toy):
    from recbole_hyperllm.phase1 import cache_key
    _, config = toy
    config1, net1, train1 = build_model(dict(config), "HyperLLM_HyperCL")
    config2, net2, train2 = build_model(dict(config, ssl_reg=0.05), "HyperLLM_HyperCL")
    assert cache_key(config1, net1, train1) != cache_key(config2, net2, train2)


# ----- formulas on hand-made tensors -------------------------------------------------

def points(tangent_rows):
    """Points of the hyperboloid exp_0((0, v)) for the given spatial tangent rows (no cap)."""
    v = torch.tensor(tangent_rows, dtype=torch.float64)
    tangent = torch.cat([torch.zeros(v.size(0), 1, dtype=v.dtype), v], dim=1)
    return LorentzBall(max_norm=None).expmap0(tangent, project=True)


def direct_infonce(h, f, tau):
    """sum_i -log(exp(-d2(h_i, f_i)/tau) / sum_j exp(-d2(h_i, f_j)/tau)), d2 = arcosh(-<x, y>_L)^2, by loops."""
    def d2(x, y):
        inner = -float(x[0] * y[0]) + float((x[1:] * y[1:]).sum())
        return math.acosh(max(-inner, 1.0)) ** 2
    total = 0.0
    for i in range(len(h)):
        logits = [math.exp(-d2(h[i], f[j]) / tau) for j in range(len(f))]
        total -= math.log(logits[i] / sum(logits))
    return total


def test_ssl_loss_matches_direct_formula():
    hu = points([[0.3, -0.2], [0.0, 0.5], [-0.4, 0.1]])
    fu = points([[0.25, -0.1], [0.1, 0.45], [-0.5, 0.2]])
    hi = points([[0.8, 0.0], [0.0, -0.6]])
    fi = points([[0.7, 0.1], [0.2, -0.5]])
    tau = 0.5
    expected = direct_infonce(hu, fu, tau) + direct_infonce(hi, fi, tau)
    assert hypercl_ssl_loss(hu, fu, hi, fi, tau).item() == pytest.approx(expected, rel=1e-9)
    # a duplicated user of the batch counts in the denominator, as in the reference
    dup = torch.tensor([0, 0, 1])
    expected = direct_infonce(hu[dup], fu[dup], tau) + direct_infonce(hi, fi, tau)
    assert hypercl_ssl_loss(hu[dup], fu[dup], hi, fi, tau).item() == pytest.approx(expected, rel=1e-9)


def test_fully_hyperbolic_aggregation_and_edge_dropout(toy):
    # N(s) = s / sqrt(|<s, s>_L|): the centroid of two points is on the hyperboloid; an empty row -> origin
    x = points([[0.3, 0.0], [0.0, 0.5]])
    s = torch.stack([0.5 * x[0] + 0.5 * x[1], torch.zeros(3, dtype=x.dtype)])
    got = lorentz_centroid_normalise(s)
    scale = math.sqrt(-float(minkowski_inner(s[:1], s[:1])))
    assert torch.allclose(got[0], s[0] / scale)
    assert float(minkowski_inner(got[:1], got[:1])) == pytest.approx(-1.0, abs=1e-12)
    assert got[1].tolist() == [1.0, 0.0, 0.0]

    # D^-1/2 A D^-1/2 against the dense formula
    rows, cols = torch.tensor([0, 0, 1, 2, 3, 3]), torch.tensor([2, 3, 3, 0, 0, 1])
    dense = torch.zeros(5, 5)
    dense[rows, cols] = 1.0
    deg = dense.sum(1)
    inv = torch.where(deg > 0, deg.clamp_min(1).rsqrt(), torch.zeros(5))
    assert torch.allclose(symmetric_normalised(rows, cols, 5).to_dense(), inv[:, None] * dense * inv[None, :])

    _, config = toy
    _, net, train = build_model(dict(config, ssl_ratio=0.3), "HyperCL")
    # with the identity graph every layer is N(x) = x, so the layer sum L x normalises back to x
    n = net.n_users + net.n_items
    eye = torch.sparse_coo_tensor(torch.arange(n).repeat(2, 1), torch.ones(n), (n, n)).coalesce()
    emb = torch.cat([net.user_embedding, net.item_embedding]).detach()
    assert torch.allclose(net.fully_hyperbolic_propagate(emb, eye), emb, atol=1e-5)
    # edge dropout keeps int(|E| (1 - r)) edges in both directions, symmetric, no self loops
    graph = net.edge_dropout_graph(torch.Generator().manual_seed(0)).to_dense()
    n_edges = net.edge_users.numel()
    assert int((graph > 0).sum()) == 2 * int(n_edges * 0.7)
    assert torch.allclose(graph, graph.t()) and graph.diagonal().abs().sum() == 0
    # the two graphs are kept for the trainer's epoch, then redrawn
    net.begin_epoch(0)
    first = net.ssl_graphs()
    assert net.ssl_graphs() is first
    net.begin_epoch(1)
    assert net.ssl_graphs() is not first

    # the loss term equals ssl_reg * the direct formula on the views of the epoch's graphs
    batch = next(iter(train))
    term = net.extra_losses(net.forward(), batch, torch.cat(net.id_tangent()))["ssl"]
    graphs = net.ssl_graphs()  # the graphs extra_losses used
    with torch.no_grad():
        h, f = net.contrastive_views(torch.cat(net.id_tangent()), graphs)
    users, items = batch[net.USER_ID], batch[net.ITEM_ID] + net.n_users
    expected = net.ssl_reg * (direct_infonce(h[users].double(), f[users].double(), net.ssl_temp)
                              + direct_infonce(h[items].double(), f[items].double(), net.ssl_temp))
    assert term.item() == pytest.approx(expected, rel=1e-4)
