"""HGCH: A Hyperbolic Graph Convolution Network Model for Heterogeneous Collaborative Graph
Recommendation (Zhang and Wu, CIKM 2024, arXiv:2304.02961; first released as HGCC).

Written from the paper and its released code (github LukeZane118/HGCH, a RecBole 1.0 plugin:
``extra/model/hgcc.py``, ``extra/model/hgcn/layers/hyp_layers.py``,
``extra/model/hgcn/utils/gyrovector_utils.py`` and ``extra/model/hgcn/utils/model_utils.py``).
Only the user-item graph exists here, so HGCH's side-information spaces and their gate fusion
with prior reduce to the identity (one space, fusion weight 1) and HGCH has no trainable
weights besides the node embeddings.

* Manifold: the Poincare ball of curvature -1 (geoopt ``PoincareBall``, c = 1, as the
  reference's ``curvature: {inter: 1.}``); node embeddings are points of the ball.
* Aggregation (``hyper_agg`` / ``_weighted_midpoint_spmm``): every layer replaces each node
  by the weighted gyromidpoint of its neighbours (row-normalised graph with self loops) in
  the ball itself, with no trip through a tangent space:
      m_i = 1/2 (x) ( sum_j a_ij lambda_j x_j / sum_j a_ij (lambda_j - 1) ),
      lambda_x = 2 / (1 - ||x||^2),   1/2 (x) y = y / (1 + sqrt(1 - ||y||^2))
  (Ungar, "A Gyrovector Space Approach to Hyperbolic Geometry", 2008, the gyromidpoint
  of the Poincare ball; equal to the Einstein midpoint in Klein coordinates).
* Layer combination (``MultiHyperbolicGraphConvolution.forward``): the reference sums the
  outputs of layers 1..L as vectors of the tangent space at the origin, and maps the sum to
  the ball with exp at the origin before scoring; that map is capped here at ``max_norm``
  (hyperbolic distance from the origin), as for the other backbones.
* Loss (``HGCC.get_loss``): the margin ranking loss on squared hyperbolic distances,
  max(d^2(u, i) - d^2(u, j) + m, 0); the reference averages it over the non-zero terms of the
  batch, the HyperLLM authors' HGCH runs sum it (``mean=1`` in log/Beauty-HGCH.txt switches
  the average on): ``hgch_loss_mean``.
* Initialisation (``get_pop_init_euc_weights``, ``init_mode: pop``): power-law prior, tangent
  vectors uniform in [-scale, scale] divided by (deg - min deg + 1)^1.1 with deg the node's
  degree in the training graph (``hgch_init: pop``); ``uniform`` is the plain HGCF init.
* Score: -d^2(u, i) with the Poincare distance (Nickel and Kiela, NeurIPS 2017, Eq. 1)
      d(x, y) = arcosh(1 + 2 ||x - y||^2 / ((1 - ||x||^2)(1 - ||y||^2))).

Not implemented: the hyperbolic user-specific negative sampling of the paper (the reference
config's RecBole ``dynamic`` sampling); RecBole's uniform negative is used, as the HyperLLM
authors' runs do.
"""
import geoopt
import geoopt.manifolds.stereographic.math as stereographic
import numpy as np
import torch

from recbole_hyperllm.graph import spmm
from recbole_hyperllm.manifold import LorentzBall, acosh_clamped
from recbole_hyperllm.model.hyperbolic.base import HyperbolicBackbone

__all__ = ["HGCH", "CappedPoincareBall", "gyromidpoint_spmm", "poincare_sqdist_pairs", "poincare_to_hyperboloid",
           "hyperboloid_to_poincare"]

# Power of the popularity prior (model_utils.get_pop_init_euc_weights: ``pow(1.1)``).
POP_POWER = 1.1
# Floor of the midpoint's denominator (the reference's clamp_min(1e-10)).
MIDPOINT_EPS = 1e-10


class CappedPoincareBall(geoopt.PoincareBall):
    """geoopt's Poincare ball (c = 1) with the same caps as ``LorentzBall``.

    * ``expmap0_capped``: exp at the origin with the distance from the origin capped at
      ``max_norm``; at the origin the Riemannian norm of u is lambda_0 ||u|| = 2 ||u||, which
      is the distance of exp_0(u) from the origin.
    * ``retr``: the exponential map with the Riemannian length of the step capped at
      ``max_step`` (geoopt's default retraction is x + u, projected).
    """

    def __init__(self, max_norm=1.5, max_step=1.5):
        super().__init__(c=1.0)
        self.max_norm = float(max_norm) if max_norm else None
        self.max_step = float(max_step) if max_step else None

    # geoopt's maps call tan_k / artan_k, which branch on the curvature's sign with ``if torch.all(...)``
    # inside TorchScript: one host synchronisation per call on CUDA (benchmarks/cuda_check.py counted 21 per
    # HGCH step). At c = 1 (k = -1) they are tanh and artanh; the three maps below are geoopt's own
    # (_expmap0, _logmap0, _expmap of stereographic/math.py) with that branch taken, equal to geoopt's
    # results (tests/test_hgch.py), with geoopt's clamps.
    def expmap0(self, u, *, dim=-1, project=True):
        """exp_0(u) = tanh(||u||) u / ||u||."""
        norm = u.norm(dim=dim, p=2, keepdim=True).clamp_min(1e-15)
        point = stereographic.tanh(norm) * (u / norm)
        return stereographic.project(point, k=self.k, dim=dim) if project else point

    def logmap0(self, x, *, dim=-1):
        """log_0(y) = artanh(||y||) y / ||y||."""
        norm = x.norm(dim=dim, p=2, keepdim=True).clamp_min(1e-15)
        return (x / norm) * stereographic.artanh(norm)

    def expmap(self, x, u, *, project=True, dim=-1):
        """exp_x(u) = x (+) tanh(lambda_x ||u|| / 2) u / ||u||  ((+) Mobius addition)."""
        norm = u.norm(dim=dim, p=2, keepdim=True).clamp_min(1e-15)
        lam = stereographic._lambda_x(x, self.k, dim=dim, keepdim=True)
        point = stereographic._mobius_add(x, stereographic.tanh(lam / 2.0 * norm) * (u / norm), self.k, dim=dim)
        return stereographic.project(point, k=self.k, dim=dim) if project else point

    def expmap0_capped(self, u):
        if self.max_norm:
            distance = 2.0 * u.norm(dim=-1, keepdim=True)
            u = u * torch.clamp(self.max_norm / distance.clamp_min(1e-15), max=1.0)
        return self.expmap0(u, project=True)

    def retr(self, x, u, *, dim=-1):
        if self.max_step:
            length = self.norm(x, u, keepdim=True, dim=dim)
            u = u * torch.clamp(self.max_step / length.clamp_min(1e-15), max=1.0)
        return self.expmap(x, u, project=True, dim=dim)


def gyromidpoint_spmm(points, weights):
    """Row i: the gyromidpoint of the points weighted by row i of the sparse ``weights`` (c = 1).

    m = 1/2 (x) (sum_j w_j lambda_j x_j / sum_j w_j (lambda_j - 1)), lambda = 2 / (1 - ||x||^2)
    (Ungar 2008; HGCH reference ``gyrovector_utils._weighted_midpoint_spmm``).
    """
    lam = 2.0 / (1.0 - points.pow(2).sum(dim=-1, keepdim=True)).clamp_min(1e-15)
    numerator = spmm(weights, lam * points)
    denominator = spmm(weights, lam - 1.0).clamp_min(MIDPOINT_EPS)
    two_mid = numerator / denominator
    half = two_mid / (1.0 + torch.sqrt((1.0 - two_mid.pow(2).sum(dim=-1, keepdim=True)).clamp_min(0.0)))
    return half


def poincare_sqdist_pairs(x, y):
    """Squared Poincare distance (c = 1) of row-aligned pairs (Nickel and Kiela 2017, Eq. 1)."""
    x2 = x.pow(2).sum(dim=-1)
    y2 = y.pow(2).sum(dim=-1)
    gap = (x - y).pow(2).sum(dim=-1)
    return acosh_clamped(1.0 + 2.0 * gap / ((1.0 - x2) * (1.0 - y2)).clamp_min(1e-15)) ** 2


def poincare_to_hyperboloid(p):
    """The isometry ball -> hyperboloid (k = 1, time first): ((1 + ||p||^2), 2 p) / (1 - ||p||^2)
    (Nickel and Kiela, ICML 2018, Eq. 11; the reference's ``PoincareBall.to_hyperboloid``)."""
    sq = p.pow(2).sum(dim=-1, keepdim=True)
    return torch.cat([1.0 + sq, 2.0 * p], dim=-1) / (1.0 - sq).clamp_min(1e-15)


def hyperboloid_to_poincare(x):
    """The isometry hyperboloid -> ball (k = 1, time first): x_{1:} / (1 + x_0) (Nickel and Kiela,
    ICML 2018, Eq. 11 inverted)."""
    return x.narrow(-1, 1, x.size(-1) - 1) / (1.0 + x.narrow(-1, 0, 1))


class HGCH(HyperbolicBackbone):
    manifold_class = CappedPoincareBall
    loss_config_keys = ("hgch_loss_mean",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.loss_reduction = "mean" if config["hgch_loss_mean"] else "sum"
        init = config["hgch_init"] or "uniform"
        if init not in ("uniform", "pop"):
            raise ValueError(f"config key 'hgch_init' is {init!r}; use 'uniform' or 'pop'")
        if init == "pop":
            self.user_embedding, self.item_embedding = self.popularity_prior_embeddings(dataset)

    def popularity_prior_embeddings(self, dataset):
        """Tangent vectors U(-scale, scale) / (deg - min deg + 1)^1.1 (reference ``init_mode: pop``).

        The minimum runs over the real users and items together; RecBole's padding rows get it.
        """
        inter = dataset.inter_matrix(form="csr")
        user_deg = torch.as_tensor(np.asarray(inter.sum(axis=1)).ravel(), dtype=torch.float32)
        item_deg = torch.as_tensor(np.asarray(inter.sum(axis=0)).ravel(), dtype=torch.float32)
        least = min(user_deg[1:].min().item(), item_deg[1:].min().item())
        user_deg[0] = item_deg[0] = least
        out = []
        for deg in (user_deg, item_deg):
            tangent = torch.empty(deg.numel(), self.embedding_size).uniform_(-self.init_scale, self.init_scale)
            out.append(self.new_node_embeddings(deg.numel(), tangent / (deg - least + 1.0).pow(POP_POWER).unsqueeze(1)))
        return out

    def propagate(self, tangent, graph):
        """exp_0(sum_{l=1..L} log_0(h_l)), h_l = gyromidpoint_A(h_{l-1}), h_0 = exp_0(input)."""
        layer = self.manifold.expmap0(tangent, project=True)
        total = None
        for _ in range(self.n_layers):
            layer = gyromidpoint_spmm(layer, graph)
            step = self.manifold.logmap0(layer)
            total = step if total is None else total + step
        return self.manifold.expmap0_capped(total)

    def pair_loss(self, out, anchors, positives, negatives, margin):
        anchor = out[anchors]
        hinge = torch.clamp_min(
            self.sqdist_pairs(anchor, out[positives]) - self.sqdist_pairs(anchor, out[negatives]) + margin, 0.0
        )
        if self.loss_reduction == "mean":  # HGCC.get_loss: the sum over the triples with a non-zero term
            return hinge.sum() / (hinge > 0).sum().clamp_min(1)
        return hinge.sum()

    def sqdist_pairs(self, x, y):
        return poincare_sqdist_pairs(x, y)

    def ranking_scores(self, users, items):
        """-||u - i||^2 / ((1 - ||u||^2)(1 - ||i||^2)): d is increasing in it, so items rank as by -d^2."""
        u2 = users.pow(2).sum(dim=-1, keepdim=True)
        i2 = items.pow(2).sum(dim=-1, keepdim=True)
        gap = (u2 + i2.t() - 2.0 * users @ items.t()).clamp_min(0.0)
        return -gap / ((1.0 - u2) * (1.0 - i2.t())).clamp_min(1e-15)

    def points_from_lorentz(self, tangent):
        """The ball points isometric to the hyperboloid points exp_0(tangent), capped as the Lorentz
        backbones cap them (so the released phase-1 geometry is kept, not reread as ball tangents).
        A hyperboloid in R^d is a (d-1)-dimensional space and this ball has d axes: the image gets
        a last coordinate of 0."""
        point = hyperboloid_to_poincare(LorentzBall(max_norm=self.manifold.max_norm).expmap0_capped(tangent))
        return self.manifold.projx(torch.cat([point, point.new_zeros(point.size(0), 1)], dim=-1))

    def hyperboloid_points(self, points):
        return poincare_to_hyperboloid(points)
