import geoopt
import torch

from recbole_hyperllm.manifold import LorentzBall, minkowski_gram, sqdist_all, sqdist_pairs


def points(n=20, d=6, scale=0.5, seed=0):
    torch.manual_seed(seed)
    u = torch.empty(n, d).uniform_(-scale, scale)
    u[:, 0] = 0
    return LorentzBall(max_norm=None).expmap0_capped(u)


def test_points_lie_on_hyperboloid():
    x = points()
    inner = -x[:, 0] ** 2 + (x[:, 1:] ** 2).sum(1)
    assert torch.allclose(inner, torch.full_like(inner, -1.0), atol=1e-5)
    assert (x[:, 0] > 0).all()


def test_distance_matches_closed_form_and_geoopt():
    x, y = points(seed=1), points(seed=2)
    closed = torch.acosh(x[:, 0] * y[:, 0] - (x[:, 1:] * y[:, 1:]).sum(1)) ** 2
    assert torch.allclose(sqdist_pairs(x, y), closed, atol=1e-5)
    assert torch.allclose(sqdist_pairs(x, y), geoopt.Lorentz().dist(x, y) ** 2, atol=1e-4)
    full = sqdist_all(x, y)
    assert torch.allclose(full.diagonal(), closed, atol=1e-5)
    assert torch.allclose(full[3, 7], sqdist_pairs(x[3:4], y[7:8])[0], atol=1e-5)


def test_gram_is_negative_minkowski_inner():
    x, y = points(seed=3), points(seed=4)
    expected = x[:, :1] @ y[:, :1].t() - x[:, 1:] @ y[:, 1:].t()
    assert torch.allclose(minkowski_gram(x, y), expected, atol=1e-6)


def test_exp_log_round_trip_and_cap():
    torch.manual_seed(0)
    u = torch.empty(10, 5).uniform_(-0.3, 0.3)
    u[:, 0] = 0
    ball = LorentzBall(max_norm=1.5)
    assert torch.allclose(ball.logmap0(ball.expmap0_capped(u)), u, atol=1e-5)
    far = u * 20  # norms well above 1.5: distance from the origin is capped
    dist = ball.dist0(ball.expmap0_capped(far))
    assert torch.allclose(dist, torch.full_like(dist, 1.5), atol=1e-4)
