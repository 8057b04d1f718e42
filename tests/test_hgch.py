"""HGCH backbone (Poincare ball, gyromidpoint aggregation), alone and inside HyperLLM."""
import math

import geoopt
import pytest
import torch
from conftest import (assert_gradients_reach_embeddings, assert_loss_terms, assert_phase1_trains_only_the_moe,
                      backbone_of, build_model)

from recbole_hyperllm.losses import hyperbolic_infonce_reference
from recbole_hyperllm.manifold import LorentzBall, sqdist_pairs
from recbole_hyperllm.model.hyperbolic.hgch import (
    HGCH, gyromidpoint_spmm, poincare_sqdist_pairs, poincare_to_hyperboloid,
)

TERMS = {"HGCH": ("rank",), "HyperLLM_HGCH": ("rank", "tag", "cl")}


@pytest.mark.parametrize("model", list(TERMS))
def test_loss_terms_are_finite_and_reach_the_embeddings(toy, model):
    _, config = toy
    config, net, train = build_model(dict(config), model)
    backbone = backbone_of(net)
    assert isinstance(backbone, HGCH) and isinstance(backbone.manifold, geoopt.PoincareBall)
    assert backbone.user_embedding.norm(dim=-1).max() < 1.0  # points of the ball
    losses = assert_loss_terms(net, next(iter(train)), TERMS[model])
    assert_gradients_reach_embeddings(net, losses)


def test_phase1_trains_only_the_moe(toy):
    _, config = toy
    config, net, train = build_model(dict(config), "HyperLLM_HGCH")
    assert_phase1_trains_only_the_moe(net, next(iter(train)), ("rank",))
    # phase 2: the MoE outputs (tangent vectors at the origin) become points of the ball
    users, items = net.semantic_outputs()
    net.initialise_id_embeddings(users, items)
    assert net.backbone.item_embedding.norm(dim=-1).max() < 1.0
    inside = 2 * items.norm(dim=-1) <= config["max_norm"]   # exp_0 is capped at distance max_norm
    assert inside.any()
    assert torch.allclose(net.manifold.logmap0(net.backbone.item_embedding)[inside], items[inside], atol=1e-4)
    assert not any(p.requires_grad for n, p in net.named_parameters() if n.startswith("moe."))


# ----- formulas on hand-made tensors -------------------------------------------------

def klein_einstein_midpoint(points, weights):
    """Direct route: Poincare -> Klein, Einstein midpoint sum w g k / sum w g, -> Poincare."""
    out = []
    for row in weights:
        num, den = torch.zeros(points.size(1), dtype=points.dtype), 0.0
        for w, p in zip(row.tolist(), points):
            sq = float(p @ p)
            k = 2 * p / (1 + sq)                         # Klein coordinates
            gamma = 1 / math.sqrt(1 - float(k @ k))      # Lorentz factor
            num, den = num + w * gamma * k, den + w * gamma
        m = num / den
        out.append(m / (1 + math.sqrt(1 - float(m @ m))))  # Klein -> Poincare
    return torch.stack(out)


def test_gyromidpoint_matches_direct_formula():
    points = torch.tensor([[0.1, 0.2], [-0.5, 0.3], [0.0, -0.7]], dtype=torch.float64)
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    got = gyromidpoint_spmm(points, weights.to_sparse())
    assert torch.allclose(got, klein_einstein_midpoint(points, weights), atol=1e-12)
    # geoopt's (dense) weighted midpoint of the Poincare ball agrees, row by row
    ball = geoopt.PoincareBall()
    for i in range(3):
        assert torch.allclose(got[i], ball.weighted_midpoint(points, weights[i], reducedim=[0]), atol=1e-10)
    # a lone point is its own midpoint; x and -x meet at the origin
    assert torch.allclose(got[2], points[2], atol=1e-12)
    pair = torch.tensor([[0.3, -0.4], [-0.3, 0.4]], dtype=torch.float64)
    assert gyromidpoint_spmm(pair, torch.full((1, 2), 0.5, dtype=torch.float64).to_sparse()).abs().max() < 1e-12


def test_distance_score_and_hyperboloid_map_agree(toy):
    x = torch.tensor([[0.1, 0.2], [-0.5, 0.3]], dtype=torch.float64)
    y = torch.tensor([[0.0, -0.7], [0.4, 0.1]], dtype=torch.float64)
    ball = geoopt.PoincareBall()
    assert torch.allclose(poincare_sqdist_pairs(x, y), ball.dist(x, y) ** 2, atol=1e-10)
    # the hyperboloid copy keeps the distance: arcosh(-<a, b>_L) = d_P(x, y)
    hx, hy = poincare_to_hyperboloid(x), poincare_to_hyperboloid(y)
    inner = -(hx[:, 0] * hy[:, 0]) + (hx[:, 1:] * hy[:, 1:]).sum(-1)
    assert torch.allclose(torch.acosh(-inner) ** 2, poincare_sqdist_pairs(x, y), atol=1e-10)
    assert torch.allclose(-hx[:, 0] ** 2 + hx[:, 1:].pow(2).sum(-1), torch.full((2,), -1.0, dtype=x.dtype))
    # Eq. 16 through the hyperboloid copy = Eq. 16 written with the Poincare distance
    logits = -ball.dist(x.unsqueeze(1), y.unsqueeze(0)) ** 2 / 0.5
    direct = (torch.logsumexp(logits, dim=1) - logits.diagonal()).sum()
    assert hyperbolic_infonce_reference(hx, hy, 0.5).item() == pytest.approx(direct.item(), rel=1e-9)

    _, config = toy
    _, net, _ = build_model(dict(config), "HGCH")
    out = net.forward().detach()
    users, items = out[1:6], out[net.n_users + 1:]
    scores = net.ranking_scores(users, items)
    dist = poincare_sqdist_pairs(users.unsqueeze(1), items.unsqueeze(0))
    assert torch.equal(scores.argsort(dim=1, descending=True)[:, :5], (-dist).argsort(dim=1, descending=True)[:, :5])
    # layers: exp_0(sum_l log_0(h_l)) with h_l the gyromidpoint of h_{l-1}
    h = net.manifold.expmap0(torch.cat(net.id_tangent()), project=True)
    total = 0
    for _ in range(net.n_layers):
        h = gyromidpoint_spmm(h, net.ui_graph)
        total = total + net.manifold.logmap0(h)
    assert torch.allclose(out, net.manifold.expmap0_capped(total).detach(), atol=1e-6)
    assert (2 * torch.atanh(out.norm(dim=-1))).max() <= net.manifold.max_norm + 1e-4


def test_mean_loss_and_popularity_prior(toy):
    _, config = toy
    _, net, train = build_model(dict(config, hgch_loss_mean=True, hgch_init="pop"), "HGCH")
    out = torch.tensor([[0.0, 0.0], [0.3, 0.1], [-0.2, 0.5], [0.6, -0.1]])
    a, p, n = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]), torch.tensor([3, 1, 3])
    hinge = torch.clamp_min(poincare_sqdist_pairs(out[a], out[p]) - poincare_sqdist_pairs(out[a], out[n]) + 0.2, 0)
    assert net.pair_loss(out, a, p, n, 0.2).item() == pytest.approx((hinge.sum() / (hinge > 0).sum()).item(), rel=1e-6)
    net.loss_reduction = "sum"
    assert net.pair_loss(out, a, p, n, 0.2).item() == pytest.approx(hinge.sum().item(), rel=1e-6)
    # power-law prior: the more interactions, the closer to the origin (on average)
    inter = train.dataset.inter_matrix(form="csr")
    deg = torch.as_tensor(inter.sum(axis=0)).ravel()[1:]
    radius = net.item_embedding.detach().norm(dim=-1)[1:]
    low, high = deg <= deg.median(), deg > deg.median()
    assert radius[high].mean() < radius[low].mean()


def test_released_phase1_vectors_become_the_isometric_ball_points(toy):
    """The release's phase-1 vectors are tangents of the hyperboloid's origin; HGCH must start from
    the same hyperbolic points (distances kept), not reread them as tangents of the ball."""
    _, config = toy
    _, net, _ = build_model(dict(config), "HGCH")
    tangent = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    tangent[:3] *= 0.2  # below the 1.5 cap
    lorentz = LorentzBall(max_norm=1.5).expmap0_capped(tangent)
    ball = net.points_from_lorentz(tangent)
    assert ball.shape == (6, 8) and torch.allclose(ball[:, -1], torch.zeros(6), atol=1e-6)
    pairs = torch.combinations(torch.arange(6), 2)
    expected = sqdist_pairs(lorentz[pairs[:, 0]], lorentz[pairs[:, 1]])
    got = poincare_sqdist_pairs(ball[pairs[:, 0]], ball[pairs[:, 1]])
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-4)
    origin = torch.zeros(1, 8)
    assert torch.allclose(poincare_sqdist_pairs(ball, origin.expand(6, -1)).sqrt(), torch.acosh(lorentz[:, 0]), atol=1e-3)
    assert net.manifold.check_point_on_manifold(ball)


def test_the_sync_free_maps_equal_geoopts():
    """CappedPoincareBall's expmap0 / logmap0 / expmap (written without geoopt's curvature branch, which
    synchronises with the host on CUDA) give geoopt's PoincareBall results, values and gradients."""
    import geoopt

    from recbole_hyperllm.model.hyperbolic.hgch import CappedPoincareBall

    ours, theirs = CappedPoincareBall(max_norm=None, max_step=None), geoopt.PoincareBall(c=1.0)
    generator = torch.Generator().manual_seed(0)
    u = (torch.randn(64, 7, generator=generator, dtype=torch.float64) * torch.logspace(-4, 1, 64, dtype=torch.float64)[:, None])
    x = theirs.expmap0(torch.randn(64, 7, generator=generator, dtype=torch.float64))
    cases = [(lambda m, a: m.expmap0(a), u), (lambda m, a: m.expmap0(a, project=False), u),
             (lambda m, a: m.logmap0(a), x), (lambda m, a: m.expmap(x, a), u), (lambda m, a: m.expmap(x, a, project=False), u)]
    for index, (apply, value) in enumerate(cases):
        grads = []
        for manifold in (ours, theirs):
            leaf = value.clone().requires_grad_(True)
            result = apply(manifold, leaf)
            result.pow(2).sum().backward()
            grads.append((result.detach(), leaf.grad))
        torch.testing.assert_close(grads[0][0], grads[1][0], msg=f"case {index}: values")
        torch.testing.assert_close(grads[0][1], grads[1][1], msg=f"case {index}: gradients")
