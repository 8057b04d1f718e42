"""Lorentz (hyperboloid) helpers on top of geoopt.

Conventions follow HGCF (Sun et al., WWW 2021; github layer6ai-labs/HGCF,
``manifolds/lorentz.py``) and the HyperLLM release (github Qin-lab-code/HyperLLM):
curvature -1 (k = 1), an embedding of size ``d`` is a point of the hyperboloid
in R^d (time coordinate first), and points produced from the tangent space at the
origin have their space part clipped to a maximum norm (``max_norm``, 1.5 in the
authors' runs).
"""
import geoopt
import torch

__all__ = ["LorentzBall", "minkowski_gram", "acosh_clamped", "sqdist_pairs", "sqdist_all"]

# Inner products below -(1 + eps) are clamped so that arcosh has a finite gradient.
ACOSH_EPS = 1e-7


class LorentzBall(geoopt.Lorentz):
    """geoopt's hyperboloid with the max-norm clipped exponential map at the origin.

    ``expmap0_clipped`` is geoopt's ``expmap0`` followed by a renormalisation of the
    space part to ``max_norm`` and a re-projection of the time coordinate, which is
    the map the HGCF/HyperLLM code applies after every propagation (Eq. 1 keeps
    <x, x> = -1).
    """

    def __init__(self, max_norm=1.5):
        super().__init__(k=1.0)
        self.max_norm = float(max_norm) if max_norm else None

    def clip(self, x):
        """Clip the space part of hyperboloid points to ``max_norm`` and re-project."""
        space = x.narrow(-1, 1, x.size(-1) - 1)
        if self.max_norm:
            norm = space.norm(dim=-1, keepdim=True).clamp_min(1e-15)
            space = space * torch.clamp(self.max_norm / norm, max=1.0)
        time = torch.sqrt(1.0 + (space * space).sum(-1, keepdim=True))
        return torch.cat([time, space], dim=-1)

    def expmap0_clipped(self, u):
        """Exponential map at the origin of tangent vectors ``u`` (R^d), then ``clip``."""
        return self.clip(self.expmap0(u, project=True))


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
