"""KAR (Xi et al., "Towards Open-World Recommendation with Knowledge Augmentation from Large Language
Models", RecSys 2024) as a framework over any hyperbolic backbone.

Written from the paper and a reading of its public code (github
YunjiaXi/Open-World-Knowledge-Augmented-Recommendation, ``RS/layers.py``: ``MLP``, ``HEA``):

* Two towers of knowledge: the user's (reasoning knowledge; here ``NAME.useremb``) and the item's
  (factual knowledge; ``NAME.itememb``), the same encoded LLM summaries every framework of this plugin
  reads.
* The hybrid-expert adaptor (HEA): ``kar_shared_experts`` experts shared by both towers and
  ``kar_specific_experts`` experts of each tower, every expert an MLP (hidden layers
  ``kar_expert_layers`` with ReLU, output ``kar_dim``); one softmax gate per tower over its shared and
  specific experts:
      z_t = sum_k softmax(W_t s_t + b_t)_k E_k(s_t),  k over shared + specific-to-t experts.
  The reference ends every expert with ReLU (its output feeds a deep CTR network); here the output is
  itself a tangent vector, so the last layer is linear and the vector can point in any direction.
* No auxiliary loss: the adaptor trains through the backbone's own ranking loss.

Where the knowledge enters (the HyperLLM paper, Sec. 5.5, describes KAR's output as concatenated with
the ID embeddings as the backbone's input): in the tangent space at the origin, before propagation. A
node's input is [log_0(ID embedding) ; z], which the backbone propagates and maps to its manifold as it
does any input; a tangent vector at the origin is a plain vector, so concatenation is well defined there
and nowhere else on the manifold.

Scale: the adaptor's output is clipped to the norm ``kar_max_norm`` (0.3, about the norm of an ID
embedding's tangent vector: uniform(+-init_scale) over its columns), z <- min(1, r / ||z||) z, the feature
clipping of Guo et al. ("Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers", CVPR 2022).
Without it the adaptor, trained through a summed ranking loss, grows without bound: KAR_HGCF on Beauty
(2026-12-07, epoch 152) had adaptor outputs of median norm 61 (items) and 99 (users) next to ID tangent
vectors of norm 0.3, so every propagated point sat on the ``max_norm`` cap, its direction set by the
adaptor alone, and the ID half received almost no gradient (valid R@20 0.076 against Base's 0.155 at the
same epoch). ``kar_max_norm: 0`` turns the clip off.

Model size: the node input keeps the width ``embedding_size`` of every other model (so the propagated
points, the distances and the scoring cost are those of the Base backbone): the ID embeddings get
``embedding_size - kar_dim`` columns and the adaptor the remaining ``kar_dim``. KAR therefore has fewer
ID parameters than the Base model and adds the adaptor's weights.
"""
import torch
from torch import nn

from recbole_hyperllm.errors import ConfigError
from recbole_hyperllm.model.framework.semantic import SemanticFramework

__all__ = ["KAR", "HybridExpertAdaptor", "expert_mlp"]


def expert_mlp(input_dim, hidden, output_dim, dropout):
    """Linear-ReLU(-Dropout) for each hidden width, then a linear output layer."""
    layers, width = [], input_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = size
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


class HybridExpertAdaptor(nn.Module):
    """KAR's HEA over ``towers`` inputs: z_t = sum_k g_t(s_t)_k E_k(s_t), experts = shared + tower t's own."""

    def __init__(self, input_dim, output_dim, shared, specific, hidden, towers=2, dropout=0.0):
        super().__init__()
        self.shared = nn.ModuleList(expert_mlp(input_dim, hidden, output_dim, dropout) for _ in range(shared))
        self.specific = nn.ModuleList(
            nn.ModuleList(expert_mlp(input_dim, hidden, output_dim, dropout) for _ in range(specific))
            for _ in range(towers))
        self.gates = nn.ModuleList(nn.Linear(input_dim, shared + specific) for _ in range(towers))

    def tower(self, index, s):
        """z for the rows ``s`` of tower ``index``."""
        weights = torch.softmax(self.gates[index](s), dim=-1)                              # (n, K)
        experts = [expert(s) for expert in list(self.shared) + list(self.specific[index])]
        return (weights.unsqueeze(-1) * torch.stack(experts, dim=1)).sum(dim=1)           # (n, d)


class KAR(SemanticFramework):
    framework_name = "KAR"
    USER_TOWER, ITEM_TOWER = 0, 1

    def __init__(self, config, dataset):
        self.kar_dim = int(config["kar_dim"])
        if not 0 < self.kar_dim < int(config["embedding_size"]) - 1:
            raise ConfigError(f"config key 'kar_dim' is {self.kar_dim}; it must be between 1 and embedding_size - 2 "
                              f"({int(config['embedding_size']) - 2}): the ID embeddings keep the other columns")
        super().__init__(config, dataset)
        self.kar_max_norm = float(config["kar_max_norm"] or 0.0)
        hidden = [int(h) for h in (config["kar_expert_layers"] or [])]
        self.adaptor = HybridExpertAdaptor(self.semantic_dim, self.kar_dim, int(config["kar_shared_experts"]),
                                           int(config["kar_specific_experts"]), hidden,
                                           dropout=float(config["kar_dropout"] or 0.0))

    def build_backbone(self, config, dataset):
        """The backbone with ID embeddings of ``embedding_size - kar_dim`` columns (the adaptor fills the rest)."""
        full = config["embedding_size"]
        config["embedding_size"] = full - self.kar_dim
        try:
            return self.backbone_class(config, dataset)
        finally:
            config["embedding_size"] = full

    def knowledge(self):
        """(z_users, z_items): the adaptor's output for every user and item, clipped to ``kar_max_norm``."""
        return (self.clip(self.adaptor.tower(self.USER_TOWER, self.user_semantic)),
                self.clip(self.adaptor.tower(self.ITEM_TOWER, self.item_semantic)))

    def clip(self, z):
        """z <- min(1, r / ||z||) z per row (r = ``kar_max_norm``; 0: z unchanged)."""
        if not self.kar_max_norm:
            return z
        norm = z.norm(dim=1, keepdim=True).clamp_min(1e-15)
        return z * (self.kar_max_norm / norm).clamp(max=1.0)

    def node_inputs(self):
        """[log_0(ID embedding) ; z] for every user and item."""
        ids = self.backbone.id_tangent()
        return torch.cat([torch.cat([e, z], dim=1) for e, z in zip(ids, self.knowledge())], dim=0)
