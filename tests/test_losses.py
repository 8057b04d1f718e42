import torch

from recbole_hyperllm.losses import hyperbolic_infonce, hyperbolic_infonce_reference, margin_ranking_loss
from recbole_hyperllm.manifold import LorentzBall


def random_points(n, d, seed, scale=0.4):
    g = torch.Generator().manual_seed(seed)
    u = torch.empty(n, d).uniform_(-scale, scale, generator=g)
    return LorentzBall(1.5).expmap0_capped(u)


def test_margin_loss_matches_brute_force():
    a, p, n = (random_points(15, 5, s) for s in (1, 2, 3))
    expected = 0.0
    for k in range(15):
        d_pos = torch.acosh(a[k, 0] * p[k, 0] - a[k, 1:] @ p[k, 1:]) ** 2
        d_neg = torch.acosh(a[k, 0] * n[k, 0] - a[k, 1:] @ n[k, 1:]) ** 2
        expected += max(float(d_pos - d_neg + 0.3), 0.0)
    assert abs(margin_ranking_loss(a, p, n, 0.3).item() - expected) < 1e-4


def brute_force_infonce(h1, h2, tau):
    total = 0.0
    for i in range(len(h1)):
        d = [float(torch.acosh(h1[i, 0] * h2[j, 0] - h1[i, 1:] @ h2[j, 1:]).clamp_min(0) ** 2) for j in range(len(h2))]
        logits = torch.tensor([-x / tau for x in d], dtype=torch.float64)
        total += float(torch.logsumexp(logits, 0) - logits[i])
    return total


def test_infonce_matches_brute_force_and_autograd():
    h1 = random_points(37, 6, 4).requires_grad_()
    h2 = random_points(37, 6, 5).requires_grad_()
    exact = hyperbolic_infonce(h1, h2, 0.5, chunk_size=8)  # several chunks, last one partial
    assert abs(exact.item() - brute_force_infonce(h1.detach(), h2.detach(), 0.5)) < 1e-3
    g1, g2 = torch.autograd.grad(exact * 1.7, [h1, h2])
    reference = hyperbolic_infonce_reference(h1, h2, 0.5)
    r1, r2 = torch.autograd.grad(reference * 1.7, [h1, h2])
    assert torch.allclose(g1, r1, atol=1e-4) and torch.allclose(g2, r2, atol=1e-4)


def test_infonce_without_grad_and_shape_check():
    h1, h2 = random_points(9, 4, 6), random_points(9, 4, 7)
    with torch.no_grad():
        value = hyperbolic_infonce(h1, h2, 0.2)
    assert abs(value.item() - hyperbolic_infonce_reference(h1, h2, 0.2).item()) < 1e-3
    try:
        hyperbolic_infonce(h1, h2[:5], 0.2)
    except ValueError as error:
        assert "same items" in str(error)
    else:
        raise AssertionError("mismatched views were accepted")
