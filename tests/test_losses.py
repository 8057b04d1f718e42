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


def test_softmax_chain_as_one_expression_equals_the_in_place_chain():
    from recbole_hyperllm.losses import _ChunkBuffers, _softmax_weights_eager, _softmax_weights_math
    from recbole_hyperllm.manifold import flip_space
    h1, h2 = random_points(12, 5, 8), random_points(40, 5, 9)
    gram = h1 @ flip_space(h2).t()
    buffers = _ChunkBuffers(12, 40, h1).scratch(12)
    in_place = _softmax_weights_eager(gram.clone(), buffers, 0.3)
    expression = _softmax_weights_math(gram, 0.3)
    for a, b in zip(in_place, expression):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_compiled_chain_gives_the_eager_loss_and_gradients():
    """torch.compile'd elementwise chain (full chunks) against the eager one: same loss and gradients, for a
    first size (a static kernel) and a second one (cl_scope batch changes the size every step: one dynamic
    kernel)."""
    for n, seed in ((300, 10), (200, 20)):
        h1 = random_points(n, 8, seed).requires_grad_()
        h2 = random_points(n, 8, seed + 1).requires_grad_()
        results = []
        for fused in (False, True):
            loss = hyperbolic_infonce(h1, h2, 0.4, chunk_size=64, fused=fused)  # compiled chunks + 1 partial
            results.append((loss.item(), *torch.autograd.grad(loss, [h1, h2])))
        (eager_loss, e1, e2), (fused_loss, f1, f2) = results
        assert abs(eager_loss - fused_loss) < 1e-4 * abs(eager_loss)
        assert torch.allclose(e1, f1, atol=1e-5) and torch.allclose(e2, f2, atol=1e-5)


def test_compiled_chain_is_chosen_on_the_cpu_for_large_problems_only():
    from recbole_hyperllm.losses import FUSED_MIN_ITEMS, use_fused_chain
    assert use_fused_chain(torch.zeros(FUSED_MIN_ITEMS, 3)) is True
    assert use_fused_chain(torch.zeros(FUSED_MIN_ITEMS - 1, 3)) is False
    assert use_fused_chain(torch.zeros(5, 3), fused=True) is True
    assert use_fused_chain(torch.zeros(FUSED_MIN_ITEMS, 3), fused=False) is False


def test_a_failing_compile_falls_back_to_the_eager_chain_with_a_warning(monkeypatch):
    import pytest

    from recbole_hyperllm import losses

    def broken(gram, tau):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(losses, "_fused_weights", broken)
    h1, h2 = random_points(20, 4, 12), random_points(20, 4, 13)
    with pytest.warns(RuntimeWarning, match="eager chain"):
        value = hyperbolic_infonce(h1, h2, 0.5, chunk_size=10, fused=True)
    assert losses._fused_weights is False
    assert abs(value.item() - hyperbolic_infonce_reference(h1, h2, 0.5).item()) < 1e-3


def test_row_parts_add_up_to_the_whole_loss_and_gradient():
    """rows=slice(...) (one part per DDP rank): the parts' losses and gradients sum to the whole's."""
    h1 = random_points(23, 5, 14).requires_grad_()
    h2 = random_points(23, 5, 15).requires_grad_()
    whole = hyperbolic_infonce(h1, h2, 0.3, chunk_size=4)
    w1, w2 = torch.autograd.grad(whole, [h1, h2])
    parts = [hyperbolic_infonce(h1, h2, 0.3, chunk_size=4, rows=slice(a, b)) for a, b in ((0, 9), (9, 23))]
    p1, p2 = torch.autograd.grad(sum(parts), [h1, h2])
    assert abs(sum(p.item() for p in parts) - whole.item()) < 1e-4
    assert torch.allclose(p1, w1, atol=1e-5) and torch.allclose(p2, w2, atol=1e-5)
