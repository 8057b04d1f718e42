"""HGCF: Hyperbolic Graph Convolution for Collaborative Filtering (Sun et al., WWW 2021).

Following the released code (github layer6ai-labs/HGCF, ``models/base_models.py``
and ``layers/hyp_layers.py``) and the variant in the HyperLLM release
(``model.py``): embeddings live on the hyperboloid, the encoder maps them to the
tangent space at the origin, applies L parameter-free propagation steps with
the row-normalised graph and sums layers 1..L (skip connections), then maps
back with exp at the origin; the loss is the hyperbolic margin ranking loss
(Eq. 6 of HyperLLM) on squared distances and the score is -d^2.
"""
from recbole_hyperllm.graph import spmm
from recbole_hyperllm.losses import margin_ranking_loss
from recbole_hyperllm.model.hyperbolic.base import HyperbolicBackbone


class HGCF(HyperbolicBackbone):
    def aggregate(self, tangent, graph):
        """sum_{l=1..L} A_hat^l x in the tangent space at the origin."""
        layer = tangent
        total = None
        for _ in range(self.n_layers):
            layer = spmm(graph, layer)
            total = layer if total is None else total + layer
        return total

    def propagate(self, tangent, graph):
        """sum_{l=1..L} A_hat^l x in the tangent space, then exp at the origin."""
        return self.manifold.expmap0_capped(self.aggregate(tangent, graph))

    def pair_loss(self, out, anchors, positives, negatives, margin):
        return margin_ranking_loss(out[anchors], out[positives], out[negatives], margin)
