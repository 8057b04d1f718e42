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


def test_transport_is_the_parallel_transport_and_stays_finite_for_tiny_steps():
    manifold = LorentzBall()
    x = points(n=200, d=8, scale=0.8, seed=1).double()
    torch.manual_seed(2)
    u = manifold.proju(x, torch.randn_like(x) * 0.3)
    v = manifold.proju(x, torch.randn_like(x))
    y = manifold.expmap(x, u)
    moved = manifold.transp(x, y, v)
    inner = lambda a, b: -(a[:, 0] * b[:, 0]) + (a[:, 1:] * b[:, 1:]).sum(1)
    assert torch.allclose(inner(y, moved), torch.zeros(200, dtype=torch.float64), atol=1e-9)   # tangent at y
    assert torch.allclose(inner(moved, moved), inner(v, v), atol=1e-9)                          # isometry
    # in float64 geoopt's formula (through d(x, y)^2) is accurate enough to compare with
    assert torch.allclose(moved, geoopt.Lorentz().transp(x, y, v), rtol=1e-5, atol=1e-4)
    x32, v32 = x.float(), v.float()
    tiny = manifold.expmap(x32, manifold.proju(x32, torch.randn_like(x32) * 1e-6))
    moved32 = manifold.transp(x32, tiny, v32)
    assert torch.isfinite(moved32).all() and torch.allclose(moved32, v32, atol=1e-3)


def test_optimiser_step_length_is_capped():
    manifold = LorentzBall(max_step=1.5)
    x = points(n=10, d=5, seed=3)
    step = manifold.proju(x, torch.randn_like(x) * 50)
    y = manifold.retr(x, step)
    assert torch.allclose(manifold.dist(x, y), torch.full((10,), 1.5), atol=1e-3)
    small = manifold.proju(x, torch.randn_like(x) * 1e-2)
    assert torch.allclose(manifold.retr(x, small), manifold.expmap(x, small), atol=1e-6)
