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

Deviations, all small: the two augmented graphs of epoch e are drawn from a torch generator seeded
with (``seed``, e) when the epoch's first batch needs them, so a resumed run (and every process of a
multi-process run) draws the same graphs for the same epoch; a node left without edges by the
dropout gets the origin in view f (the reference's N(0) is the zero vector, which is not a point of
the hyperboloid); view f's inputs are exp_0 of the same (capped) tangent inputs as the main view.

Backbone interface: ``propagate`` is HGCF's; ``extra_losses`` receives the tangent inputs of the
user-item graph and builds both augmented views from them. So the SSL term follows whatever inputs
drive the user-item graph: the ID embeddings, or a framework's inputs (e.g. HyperLLM's MoE outputs in
phase 1, where only the MoE trains). HyperCL adds no trainable weights.
"""
import torch

from recbole_hyperllm.graph import SparseGraph, spmm
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
    """D^-1/2 A D^-1/2 of the 0/1 matrix with entries (rows, cols) (HyperCL ``create_adj_mat``), sparse CSR;
    (rows, cols) must hold both directions of every edge, so the matrix is its own transpose."""
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
        self.seed = int(config["seed"] or 0)
        self.epoch = 0
        self._ssl_graphs = None  # (epoch, graphs) of the last epoch that drew them

    # ----- views -------------------------------------------------------------
    def edge_dropout_graph(self, generator):
        """One augmented graph: int(|E| (1 - ssl_ratio)) edges kept at random, D^-1/2 A D^-1/2."""
        n_edges = self.edge_users.numel()
        keep = torch.randperm(n_edges, generator=generator).to(self.edge_users.device)
        keep = keep[: int(n_edges * (1.0 - self.ssl_ratio))]
        users, items = self.edge_users[keep], self.edge_items[keep] + self.n_users
        graph = symmetric_normalised(torch.cat([users, items]), torch.cat([items, users]), self.n_users + self.n_items)
        return SparseGraph(graph, graph)  # symmetric

    def begin_epoch(self, epoch):
        self.epoch = epoch

    def ssl_graphs(self):
        """The two augmented graphs of the current epoch, drawn once per epoch from (``seed``, epoch)."""
        if self._ssl_graphs is None or self._ssl_graphs[0] != self.epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._ssl_graphs = (self.epoch, (self.edge_dropout_graph(generator), self.edge_dropout_graph(generator)))
        return self._ssl_graphs[1]

    def fully_hyperbolic_propagate(self, points, graph):
        """HyperCL's FHGCN (resSumGCN): y_{l+1} = N(A y_l), output N(sum_{l=1..L} y_l)."""
        layer, total = points, None
        for _ in range(self.n_layers):
            layer = lorentz_centroid_normalise(spmm(graph, layer))
            total = layer if total is None else total + layer
        return lorentz_centroid_normalise(total)

    def contrastive_views(self, tangent, graphs):
        """(h, f): tangent-space HGCN over graphs[0], fully hyperbolic GCN over graphs[1]."""
        h = self.manifold.expmap0_capped(self.aggregate(tangent, graphs[0]))
        f = self.fully_hyperbolic_propagate(self.manifold.expmap0_capped(tangent), graphs[1])
        return h, f

    # ----- backbone interface -------------------------------------------------
    def share_terms(self):
        """The SSL InfoNCE sums over the batch's users and items, like the ranking loss."""
        return super().share_terms() | {"ssl"}

    def extra_losses(self, out, interaction, inputs):
        """ssl_reg * (L_ssl(users of the batch) + L_ssl(positive items of the batch)), both views built
        from the tangent ``inputs`` of the user-item graph."""
        h, f = self.contrastive_views(inputs, self.ssl_graphs())
        users = interaction[self.USER_ID]
        items = interaction[self.ITEM_ID] + self.n_users
        ssl = hypercl_ssl_loss(h[users], f[users], h[items], f[items], self.ssl_temp)
        return {"ssl": self.ssl_reg * ssl}
