"""HRCF: Enhancing Collaborative Filtering via Hyperbolic Geometric Regularization
(Yang, Zhou, Liu, Lian, King, WWW 2022, arXiv:2204.08176).

HRCF is HGCF (same parameter-free propagation in the tangent space at the origin,
same hyperbolic margin ranking loss and score) plus two changes (Sec. 4 of the paper):

* root alignment: after the layer sum, the tangent vectors of all nodes of the graph
  are centred (their mean is subtracted) before the exponential map at the origin,
  so that the embeddings are centred on the hyperboloid's root;
* the hyperbolic-geometry-aware regulariser L_reg = 1 / psi, where psi is the root
  mean square distance of the (propagated) item embeddings from the origin, i.e. the
  RMS norm of their tangent vectors at the origin; it pushes the items away from the
  origin, towards the boundary where hyperbolic space has room for them. The
  training loss is L_rank + alpha * L_reg (``hrcf_alpha``; the authors' runs on
  Beauty in the HyperLLM release, log/Beauty-HRCF.txt, use alpha = 25).

The official repository (github marlin-codes/HRCF) contains only a README; the HICF
release by the same authors (github marlin-codes/HICF, ``layers/hyp_layers.py``) has
the same encoder without the centring. The formulas here are written from the
paper: centring the layer sum in the tangent space (root alignment), and
psi = sqrt(mean_i ||log_0(h_i)||^2 + 1e-6) over the items (geometric regulariser).
"""
import torch

from recbole_hyperllm.model.hyperbolic.hgcf import HGCF

__all__ = ["HRCF", "root_align", "hrcf_geometric_regulariser"]

# Added inside the square root of psi so that 1 / psi stays finite if every item sits at the origin.
PSI_EPS = 1e-6


def root_align(tangent_sum):
    """HRCF root alignment: x - mean_j x_j over the nodes of the graph (tangent space at the origin)."""
    return tangent_sum - tangent_sum.mean(dim=0, keepdim=True)


def hrcf_geometric_regulariser(item_points):
    """HRCF's L_reg = 1 / psi with psi = sqrt(mean_i ||log_0(h_i)||^2 + eps).

    ||log_0(h)|| is the distance of h from the origin o = (1, 0, ..., 0) of the
    hyperboloid (k = 1): d(o, h) = arcosh(h_0) = arsinh(||h_1:||). The arsinh form
    avoids arcosh's infinite derivative at the origin.
    """
    spatial = item_points.narrow(-1, 1, item_points.size(-1) - 1)
    origin_sqdist = torch.asinh(spatial.norm(dim=-1)) ** 2
    return torch.rsqrt(origin_sqdist.mean() + PSI_EPS)


class HRCF(HGCF):
    loss_config_keys = ("hrcf_alpha",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hrcf_alpha = config["hrcf_alpha"]

    def propagate(self, tangent, graph):
        """Root-aligned HGCF propagation: exp_0(sum_l A_hat^l x - mean)."""
        return self.manifold.expmap0_capped(root_align(self.aggregate(tangent, graph)))

    def extra_losses(self, out, interaction, inputs):
        """alpha * L_reg over the propagated items of the user-item graph (row 0 is RecBole's padding item)."""
        items = out[self.n_users + 1:]
        return {"hrcf_reg": self.hrcf_alpha * hrcf_geometric_regulariser(items)}
