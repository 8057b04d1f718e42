"""HyperCL: hyperbolic contrastive learning for collaborative filtering (Qin et al., TKDE 2024).

Written from the released code (github Qin-lab-code/HyperCL: ``models/base_models.py``,
``models/encoders.py``, ``layers/hyp_layers.py``, ``layers/hyp_fully_layers.py``,
``utils/data.py``, ``run.py``) and the HyperLLM authors' HyperCL runs
(github Qin-lab-code/HyperLLM, ``log/*-HyperCL*.txt``: ``ssl_ratio``, ``ssl_temp``, ``ssl_reg``).

* Main view (``encoder1`` on the full graph, ``HGCN`` / ``HypAgg`` with ``resSumGCN``): HGCF's
  propagation, log at the origin, sum_{l=1..L} A_hat^l x with the row-normalised graph with
  self loops, exp at the origin. It gives the ranking loss and the scores, exactly as HGCF here.
* Two augmented views per epoch (``run.py``: ``create_adj_mat(True, 'ed')`` twice per epoch;
  ``utils/data.py``): edge dropout keeps int(|E| (1 - ssl_ratio)) training edges drawn without
  replacement and normalises symmetrically, D^-1/2 A D^-1/2 (no self loops).
  - view h: the same tangent-space HGCN over the first dropped graph (``encoder1`` on ``adj_1``);
  - view f: the fully hyperbolic GCN over the second one (``encoder2`` = ``FHGCN`` /
    ``FullyStackGCNs.resSumGCN``) that aggregates the hyperboloid points themselves:
        y_{l+1} = N(A y_l),  y_0 = x,  f = N(sum_{l=1..L} y_l),  N(s) = s / sqrt(|<s, s>_L|)
    (``fully_Agg``: the Lorentzian centroid, k = 1).
* Contrastive loss (``Contra_loss``), over the users and the positive items of the batch:
      L_ssl = sum_i -log( exp(-d^2(h_i, f_i) / t) / sum_j exp(-d^2(h_i, f_j) / t) )
  for users and items separately (j runs over the same batch column, duplicates included),
  weighted by ``ssl_reg``: L = L_rank + ssl_reg (L_ssl_user + L_ssl_item). It is the loss term
  ``ssl``. d^2 is the squared hyperbolic distance arcosh(-<x, y>_L)^2 of this package (the
  HyperLLM release's ``manifolds/lorentz.py`` ``sqdist``, under which the authors' Beauty
  settings were logged; the HyperCL repository's own ``sqdist`` is -2 - 2 <x, y>_L).

Deviations, all small: the augmented graphs are redrawn every ``ceil(#train interactions /
train_batch_size)`` training batches (once per RecBole epoch) with torch's RNG; a node left
without edges by the dropout gets the origin in view f (the reference's N(0) is the zero vector,
which is not a point of the hyperboloid); view f's inputs are exp_0 of the same (capped) tangent
inputs as the main view, i.e. the ID embeddings themselves.

Backbone interface: ``propagate`` is HGCF's; when it runs over the user-item graph
(``self.ui_graph``) it records its tangent inputs, and ``extra_losses`` builds both augmented
views from the recorded inputs. So the SSL term follows whatever inputs drive the user-item graph:
the ID embeddings, or the MoE outputs in HyperLLM's phase 1 (where only the MoE trains).
HyperCL adds no trainable weights.
"""
import math

import torch

from recbole_hyperllm.losses import hyperbolic_infonce
from recbole_hyperllm.manifold import minkowski_inner
from recbole_hyperllm.model.hyperbolic.hgcf import HGCF

__all__ = ["HyperCL", "lorentz_centroid_normalise", "hypercl_ssl_loss", "symmetric_normalised"]

# Below this value of -<s, s>_L an aggregate counts as empty (the node has no edge in the view).
EMPTY_EPS = 1e-12
# Rows per chunk of the exact InfoNCE (losses.hyperbolic_infonce).
SSL_CHUNK = 256


def lorentz_centroid_normalise(support):
    """HyperCL ``fully_Agg``: s / sqrt(|<s, s>_L|) (onto the hyperboloid, k = 1); empty rows -> origin."""
    sq = -minkowski_inner(support, support)
    scaled = support / sq.abs().clamp_min(EMPTY_EPS).sqrt()
    origin = torch.zeros_like(support)
    origin[..., 0] = 1.0
    return torch.where(sq.abs() > EMPTY_EPS, scaled, origin)


def hypercl_ssl_loss(h_users, f_users, h_items, f_items, temperature):
    """HyperCL ``Contra_loss``: the InfoNCE between views h and f, users and items summed."""
    return (hyperbolic_infonce(h_users, f_users, temperature, SSL_CHUNK)
            + hyperbolic_infonce(h_items, f_items, temperature, SSL_CHUNK))


def symmetric_normalised(rows, cols, n_nodes):
    """D^-1/2 A D^-1/2 of the 0/1 matrix with entries (rows, cols) (HyperCL ``create_adj_mat``), sparse CSR."""
    values = torch.ones(rows.numel(), device=rows.device)
    degree = torch.zeros(n_nodes, device=rows.device).index_add_(0, rows, values)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1.0).rsqrt(), torch.zeros_like(degree))
    matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), inv_sqrt[rows] * inv_sqrt[cols], (n_nodes, n_nodes),
                                     check_invariants=False)  # indices come from the graph itself
    return matrix.coalesce().to_sparse_csr()


class HyperCL(HGCF):
    loss_config_keys = ("ssl_ratio", "ssl_temp", "ssl_reg")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.ssl_ratio = float(config["ssl_ratio"])
        self.ssl_temp = float(config["ssl_temp"])
        self.ssl_reg = float(config["ssl_reg"])
        if not 0.0 <= self.ssl_ratio < 1.0:
            raise ValueError(f"config key 'ssl_ratio' is {self.ssl_ratio}; HyperCL's edge dropout needs 0 <= ratio < 1")
        if self.ssl_temp <= 0.0:
            raise ValueError(f"config key 'ssl_temp' is {self.ssl_temp}; it must be positive")
        inter = dataset.inter_matrix(form="coo")
        keys = torch.unique(torch.as_tensor(inter.row, dtype=torch.long) * self.n_items
                            + torch.as_tensor(inter.col, dtype=torch.long))
        # The distinct training edges (user, item), the population of the edge dropout.
        self.register_buffer("edge_users", (keys // self.n_items).to(self.device), persistent=False)
        self.register_buffer("edge_items", (keys % self.n_items).to(self.device), persistent=False)
        self.ssl_batches_per_epoch = max(1, math.ceil(dataset.inter_num / config["train_batch_size"]))
        self._ssl_step = 0
        self._ssl_graphs = None
        self._ui_inputs = None

    # ----- views -------------------------------------------------------------
    def edge_dropout_graph(self):
        """One augmented graph: int(|E| (1 - ssl_ratio)) edges kept at random, D^-1/2 A D^-1/2."""
        n_edges = self.edge_users.numel()
        keep = torch.randperm(n_edges, device=self.edge_users.device)[: int(n_edges * (1.0 - self.ssl_ratio))]
        users, items = self.edge_users[keep], self.edge_items[keep] + self.n_users
        return symmetric_normalised(torch.cat([users, items]), torch.cat([items, users]), self.n_users + self.n_items)

    def ssl_graphs(self):
        """The two augmented graphs of the current epoch (redrawn every ``ssl_batches_per_epoch`` calls)."""
        if self._ssl_graphs is None or self._ssl_step % self.ssl_batches_per_epoch == 0:
            self._ssl_graphs = (self.edge_dropout_graph(), self.edge_dropout_graph())
        self._ssl_step += 1
        return self._ssl_graphs

    def fully_hyperbolic_propagate(self, points, graph):
        """HyperCL's FHGCN (resSumGCN): y_{l+1} = N(A y_l), output N(sum_{l=1..L} y_l)."""
        layer, total = points, None
        for _ in range(self.n_layers):
            layer = lorentz_centroid_normalise(torch.sparse.mm(graph, layer))
            total = layer if total is None else total + layer
        return lorentz_centroid_normalise(total)

    def contrastive_views(self, tangent, graphs):
        """(h, f): tangent-space HGCN over graphs[0], fully hyperbolic GCN over graphs[1]."""
        h = self.manifold.expmap0_capped(self.aggregate(tangent, graphs[0]))
        f = self.fully_hyperbolic_propagate(self.manifold.expmap0_capped(tangent), graphs[1])
        return h, f

    # ----- backbone interface -------------------------------------------------
    def propagate(self, tangent, graph):
        if graph is self.ui_graph:
            self._ui_inputs = tangent  # the inputs of the main view, for the SSL views of extra_losses
        return super().propagate(tangent, graph)

    def extra_losses(self, out, interaction):
        """ssl_reg * (L_ssl(users of the batch) + L_ssl(positive items of the batch))."""
        tangent, self._ui_inputs = self._ui_inputs, None
        if tangent is None:  # no propagation over the user-item graph recorded: use the ID embeddings
            tangent = torch.cat(self.id_tangent(), dim=0)
        h, f = self.contrastive_views(tangent, self.ssl_graphs())
        users = interaction[self.USER_ID]
        items = interaction[self.ITEM_ID] + self.n_users
        ssl = hypercl_ssl_loss(h[users], f[users], h[items], f[items], self.ssl_temp)
        return {"ssl": self.ssl_reg * ssl}
