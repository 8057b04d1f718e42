"""Lorentz (hyperboloid) helpers on top of geoopt.

Conventions follow HGCF (Sun et al., WWW 2021; github layer6ai-labs/HGCF,
``manifolds/lorentz.py``) and the HyperLLM release (github Qin-lab-code/HyperLLM):
curvature -1 (k = 1), an embedding of size ``d`` is a point of the hyperboloid
in R^d (time coordinate first), and the exponential map at the origin caps the
distance from the origin at ``max_norm`` (1.5 in the authors' runs).
"""
import geoopt
import torch

__all__ = ["LorentzBall", "minkowski_inner", "flip_space", "minkowski_gram", "acosh_clamped", "sqdist_pairs", "sqdist_all"]

# Inner products below -(1 + eps) are clamped so that arcosh has a finite gradient.
ACOSH_EPS = 1e-7


class LorentzBall(geoopt.Lorentz):
    """geoopt's hyperboloid (k = 1) with the authors' caps and a stable transport.

    * ``expmap0_capped`` is geoopt's ``expmap0`` with the tangent vector's
      (Minkowski) norm, i.e. the hyperbolic distance from the origin, capped at
      ``max_norm``: the authors' ``_expmap0`` clamps that norm at EXP_MAX_NORM = 1.5
      (Qin-lab-code/HyperLLM, ``manifolds/lmath.py``). ``max_norm=None`` disables the cap.
    * ``retr`` (the Riemannian optimisers' step) caps the step length at
      ``max_step``, as the authors' ``_expmap`` does (EXP_MAX_NORM again).
    * ``transp`` is the closed-form parallel transport of the hyperboloid,
      v + <y, v>_L / (1 - <x, y>_L) (x + y) (as in the authors' ``lmath._parallel_transport``).
      geoopt 0.5.1 divides by d(x, y)^2 instead, which in float32 returned entries of
      up to 4e3-8e14 (true values ~1) for steps of length 1e-7 to 1e-1 on random points,
      and made momentum RSGD diverge to NaN here.
    """

    def __init__(self, max_norm=1.5, max_step=1.5):
        super().__init__(k=1.0)
        self.max_norm = float(max_norm) if max_norm else None
        self.max_step = float(max_step) if max_step else None

    def _capped(self, u, cap):
        if cap:
            u = u * torch.clamp(cap / self.norm(u, keepdim=True), max=1.0)
        return u

    def expmap0_capped(self, u):
        """exp_0(u * min(1, max_norm / ||u||_L)), projected onto the hyperboloid."""
        return self.expmap0(self._capped(u, self.max_norm), project=True)

    def retr(self, x, u, *, dim=-1):
        """exp_x of the step u (projected on T_x) with its length capped at ``max_step``."""
        u = self._capped(self.proju(x, u, dim=dim), self.max_step)
        return self.expmap(x, u, norm_tan=False, project=True, dim=dim)

    def transp(self, x, y, v, *, dim=-1):
        """Parallel transport of v from T_x to T_y along the geodesic (k = 1)."""
        coefficient = minkowski_inner(y, v) / torch.clamp_min(1.0 - minkowski_inner(x, y), 1e-7)
        return v + coefficient * (x + y)


def minkowski_inner(x, y):
    """<x, y>_L = -x_0 y_0 + sum_i x_i y_i (Eq. 2), row-wise, keeping the last dim."""
    product = x * y
    return product.narrow(-1, 1, x.size(-1) - 1).sum(-1, keepdim=True) - product.narrow(-1, 0, 1)


def flip_space(x):
    """x J with J = diag(1, -1, ..., -1), so that x_i . (y J)_j = -<x_i, y_j>_L."""
    return torch.cat([x.narrow(-1, 0, 1), -x.narrow(-1, 1, x.size(-1) - 1)], dim=-1)


def minkowski_gram(x, y):
    """-<x_i, y_j>_L for all pairs (Eq. 2 with the sign flipped): a (n, m) matrix >= 1."""
    return x @ flip_space(y).t()


def acosh_clamped(z):
    """arcosh(max(z, 1 + eps)); the clamp keeps gradients finite on the diagonal."""
    return torch.acosh(torch.clamp_min(z, 1.0 + ACOSH_EPS))


def sqdist_pairs(x, y):
    """Squared hyperbolic distance of row-aligned pairs (Eq. 4 squared, k = 1)."""
    return acosh_clamped(-minkowski_inner(x, y).squeeze(-1)) ** 2


def sqdist_all(x, y):
    """Squared hyperbolic distance between every row of ``x`` and every row of ``y``."""
    return acosh_clamped(minkowski_gram(x, y)) ** 2
