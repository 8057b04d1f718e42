"""HICF: Hyperbolic Informative Collaborative Filtering (Yang, Li, Zhou, Liu, King, KDD 2022,
arXiv:2207.09051).

HICF keeps HGCF's propagation (github marlin-codes/HICF, ``layers/hyp_layers.py``,
``resSumGCN``: the sum of the propagated layers, then exp at the origin) and changes
the margin ranking loss (``models/hicf_model.py``):

* geometry-aware adaptive margin (``hratio`` / ``decode_pos``): the margin of the
  triple (u, i, j) is m * sigmoid(h(u, i)) with, for points on the hyperboloid
  (time coordinate first, k = 1),
      h(u, i) = -(1 - <u, i>_L - u_0 - i_0) / (u_0 i_0);
  the weight is differentiable, as in the reference;
* hyperbolic informative negative sampling (``negative_sampling`` / ``decode_neg``):
  ``num_neg`` random negative items are drawn for each positive pair and the one
  closest to the positive item (squared Euclidean distance between the hyperboloid
  points, as the reference computes it) is used as the negative;
* the loss is sum(max(d^2(u, i) - d^2(u, j*) + m * w(u, i), 0)).

HICF's code maps to the hyperboloid with HGCN's exp at the origin, which has no cap on the
distance from the origin; with this package's default cap (``max_norm`` 1.5) every point ends
on the sphere of radius 1.5 and the adaptive margin, a function of the distance from the
origin, hardly varies. ``properties/beauty/HICF.yaml`` sets ``max_norm: 0`` (no cap).

The reference draws the candidates uniformly from all items and redraws those that
are positive pairs of the batch; here they are drawn with ``torch.randint`` over the
real items (RecBole's item 0 is padding) and redrawn while they are training
interactions of the user (up to ``MAX_REDRAWS`` times; any left over are replaced by
RecBole's own sampled negative, which is never a training interaction).
"""
import torch

from recbole_hyperllm.losses import margin_ranking_loss
from recbole_hyperllm.manifold import minkowski_inner
from recbole_hyperllm.model.hyperbolic.hgcf import HGCF

__all__ = ["HICF", "adaptive_margin_weight", "informative_negatives"]

MAX_REDRAWS = 10


def adaptive_margin_weight(anchor, positive):
    """sigmoid(h(a, p)), h = -(1 - <a, p>_L - a_0 - p_0) / (a_0 p_0) (HICF ``hratio``), one per row."""
    a0, p0 = anchor[:, 0], positive[:, 0]
    score = 1.0 - minkowski_inner(anchor, positive).squeeze(-1) - a0 - p0
    return torch.sigmoid(-score / (a0 * p0))


def informative_negatives(out, positives, candidates):
    """For each row, the candidate node nearest (squared Euclidean distance of the hyperboloid
    points) to the positive node (HICF ``decode_neg``); the choice itself carries no gradient."""
    with torch.no_grad():
        gap = (out[candidates] - out[positives].unsqueeze(1)).pow(2).sum(dim=-1)
        pick = gap.argmin(dim=1, keepdim=True)
    return candidates.gather(1, pick).squeeze(1)


class HICF(HGCF):
    loss_config_keys = ("num_neg",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.num_neg = int(config["num_neg"] or 1)
        if self.num_neg < 1:
            raise ValueError(f"config key 'num_neg' is {self.num_neg}; HICF needs at least one negative candidate")
        inter = dataset.inter_matrix(form="coo")
        keys = torch.as_tensor(inter.row, dtype=torch.long) * self.n_items + torch.as_tensor(inter.col, dtype=torch.long)
        # user * n_items + item of every training interaction, to reject positives among the candidates.
        self.register_buffer("train_pair_keys", torch.unique(keys).to(self.device), persistent=False)

    def negative_candidates(self, users, fallback):
        """(batch, num_neg) random item IDs that are not training interactions of their user."""
        shape = (users.size(0), self.num_neg)
        items = torch.randint(1, self.n_items, shape, device=users.device)
        row_key = users.unsqueeze(1) * self.n_items
        if users.device.type != "cpu":
            return self.redraw_without_sync(items, row_key, fallback)
        for _ in range(MAX_REDRAWS):
            clash = self.is_training_pair(row_key + items)
            if not clash.any():
                return items
            items[clash] = torch.randint(1, self.n_items, (int(clash.sum()),), device=users.device)
        clash = self.is_training_pair(row_key + items)
        return torch.where(clash, fallback.unsqueeze(1).expand(shape), items)

    def is_training_pair(self, keys):
        """``torch.isin(keys, train_pair_keys)`` by binary search in the sorted keys: the same answer with no
        host synchronisation on CUDA (``isin`` synchronises there)."""
        known = self.train_pair_keys
        where = torch.searchsorted(known, keys).clamp_(max=known.numel() - 1)
        return known[where] == keys

    def redraw_without_sync(self, items, row_key, fallback):
        """The redraws of ``negative_candidates`` with no host synchronisation (on an accelerator): always
        MAX_REDRAWS rounds, each replacing the clashing candidates by fresh draws; the same distribution as
        the CPU loop, which stops at the first round without a clash (another random stream)."""
        for _ in range(MAX_REDRAWS):
            clash = self.is_training_pair(row_key + items)
            items = torch.where(clash, torch.randint_like(items, 1, self.n_items), items)
        clash = self.is_training_pair(row_key + items)
        return torch.where(clash, fallback.unsqueeze(1).expand_as(items), items)

    def pair_loss(self, out, anchors, positives, negatives, margin):
        """HICF's ranking loss; ``negatives`` is one node per triple or (triples, candidates) nodes,
        of which the informative one is used. The adaptive margin applies to both forms."""
        if negatives.dim() == 2:
            negatives = informative_negatives(out, positives, negatives)
        anchor, positive = out[anchors], out[positives]
        return margin_ranking_loss(anchor, positive, out[negatives], margin * adaptive_margin_weight(anchor, positive))

    def interaction_loss(self, out, interaction, margin, inputs):
        users = interaction[self.USER_ID]
        candidates = self.negative_candidates(users, interaction[self.NEG_ITEM_ID]) + self.n_users
        terms = {"rank": self.pair_loss(out, users, interaction[self.ITEM_ID] + self.n_users, candidates, margin)}
        terms.update(self.extra_losses(out, interaction, inputs))
        return terms
