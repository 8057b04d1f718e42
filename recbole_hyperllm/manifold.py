"""Lorentz (hyperboloid) helpers on top of geoopt.

Conventions follow HGCF (Sun et al., WWW 2021; github layer6ai-labs/HGCF,
``manifolds/lorentz.py``) and the HyperLLM release (github Qin-lab-code/HyperLLM):
curvature -1 (k = 1), an embedding of size ``d`` is a point of the hyperboloid
in R^d (time coordinate first), and the exponential map at the origin caps the
distance from the origin at ``max_norm`` (1.5 in the authors' runs).
"""
import geoopt
import torch

__all__ = ["LorentzBall", "minkowski_gram", "acosh_clamped", "sqdist_pairs", "sqdist_all"]

# Inner products below -(1 + eps) are clamped so that arcosh has a finite gradient.
ACOSH_EPS = 1e-7


class LorentzBall(geoopt.Lorentz):
    """geoopt's hyperboloid (k = 1) with a capped exponential map at the origin.

    ``expmap0_capped`` is geoopt's ``expmap0`` with the tangent vector's
    (Minkowski) norm, i.e. the hyperbolic distance from the origin, capped at
    ``max_norm``: the authors' ``_expmap0`` clamps that norm at EXP_MAX_NORM = 1.5
    (Qin-lab-code/HyperLLM, ``manifolds/lmath.py``). ``max_norm=None`` disables the cap.
    """

    def __init__(self, max_norm=1.5):
        super().__init__(k=1.0)
        self.max_norm = float(max_norm) if max_norm else None

    def expmap0_capped(self, u):
        """exp_0(u * min(1, max_norm / ||u||_L)), projected onto the hyperboloid."""
        if self.max_norm:
            u = u * torch.clamp(self.max_norm / self.norm(u, keepdim=True), max=1.0)
        return self.expmap0(u, project=True)


def minkowski_gram(x, y):
    """-<x_i, y_j>_L for all pairs (Eq. 2 with the sign flipped): a (n, m) matrix >= 1."""
    y_flipped = torch.cat([-y.narrow(-1, 0, 1), y.narrow(-1, 1, y.size(-1) - 1)], dim=-1)
    return -(x @ y_flipped.t())


def acosh_clamped(z):
    """arcosh(max(z, 1 + eps)); the clamp keeps gradients finite on the diagonal."""
    return torch.acosh(torch.clamp_min(z, 1.0 + ACOSH_EPS))


def sqdist_pairs(x, y):
    """Squared hyperbolic distance of row-aligned pairs (Eq. 4 squared, k = 1)."""
    inner = (x.narrow(-1, 0, 1) * y.narrow(-1, 0, 1)).squeeze(-1) - (
        x.narrow(-1, 1, x.size(-1) - 1) * y.narrow(-1, 1, y.size(-1) - 1)
    ).sum(-1)
    return acosh_clamped(inner) ** 2


def sqdist_all(x, y):
    """Squared hyperbolic distance between every row of ``x`` and every row of ``y``."""
    return acosh_clamped(minkowski_gram(x, y)) ** 2
