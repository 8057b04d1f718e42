"""The shared implementation of the hyperbolic backbones (``HyperbolicBackbone``).

The interface a framework may use is declared in ``interface.py`` (``Backbone``); this class implements
it for the backbones of this package: node embeddings in ``embedding_space``, the user-item graph,
RecBole's loss and scoring API. A backbone subclass overrides ``propagate`` and ``pair_loss`` (and, where
it has them, ``extra_losses`` and the geometry methods).
"""
import torch
from geoopt import ManifoldParameter
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_hyperllm.errors import DivergenceError
from recbole_hyperllm.graph import SparseGraph, bipartite_adjacency, row_normalise_with_self_loops
from recbole_hyperllm.manifold import LorentzBall, minkowski_gram, sqdist_pairs
from recbole_hyperllm.model.abstract import PluginModel

__all__ = ["DivergenceError", "HyperbolicBackbone", "PropagatedScoring"]


class PropagatedScoring:
    """RecBole scoring from propagated points, computed once per evaluation pass.

    Needs ``forward()`` (all user+item points), ``n_users``, ``n_items``,
    ``sqdist_pairs`` and ``ranking_scores``.
    """

    _eval_cache = None

    def eval_points(self):
        """Propagated (users, items); raises DivergenceError if they are not finite."""
        if self._eval_cache is None:
            with torch.no_grad():
                out = self.forward()
            if not torch.isfinite(out).all():
                raise DivergenceError(
                    f"{type(self).__name__}: the propagated embeddings contain NaN/inf: the model diverged "
                    "and no metrics are reported (lower learning_rate or the margins)."
                )
            self._eval_cache = torch.split(out, [self.n_users, self.n_items])
        return self._eval_cache

    def train(self, mode=True):
        self._eval_cache = None
        return super().train(mode)

    def predict(self, interaction):
        users, items = self.eval_points()
        return -self.sqdist_pairs(users[interaction[self.USER_ID]], items[interaction[self.ITEM_ID]])

    def full_sort_predict(self, interaction):
        users, items = self.eval_points()
        return self.ranking_scores(users[interaction[self.USER_ID]], items).reshape(-1)


class HyperbolicBackbone(PluginModel, PropagatedScoring, GeneralRecommender):
    input_type = InputType.PAIRWISE
    # Config keys of the backbone's own loss beyond the shared ones (part of phase-1 cache keys).
    loss_config_keys = ()
    loss_reduction = "sum"  # pair_loss sums over triples (Eq. 6, the authors' code)
    manifold_class = LorentzBall

    def share_terms(self):
        """A summed ranking loss over this process's triples is its share; a mean is a whole estimate."""
        return frozenset({"rank"}) if self.loss_reduction == "sum" else frozenset()

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.margin = config["margin"]
        self.init_scale = config["init_scale"]
        self.manifold = self.manifold_class(max_norm=config["max_norm"], max_step=config["max_step"])
        self.embedding_space = config["embedding_space"] or "manifold"
        if self.embedding_space not in ("manifold", "tangent"):
            raise ValueError(f"config key 'embedding_space' is {self.embedding_space!r}; use 'manifold' (points, "
                             "Riemannian optimisers) or 'tangent' (tangent vectors at the origin, any optimiser)")
        self.user_embedding = self.new_node_embeddings(self.n_users)
        self.item_embedding = self.new_node_embeddings(self.n_items)
        self.ui_graph = self.user_item_graph(dataset)

    # ----- building blocks -------------------------------------------------
    def new_node_embeddings(self, n_nodes, tangent=None):
        """Node embeddings from tangent vectors (uniform in [-scale, scale] when not given): points on the
        manifold (``embedding_space: manifold``) or the tangent vectors themselves (``tangent``, as HGCH's
        reference stores them)."""
        if tangent is None:
            tangent = torch.empty(n_nodes, self.embedding_size).uniform_(-self.init_scale, self.init_scale)
        points = self.manifold.expmap0_capped(tangent.to(torch.float32))
        return self.embeddings_from_points(points.to(self.device))

    def embeddings_from_points(self, points):
        """A trainable parameter holding ``points`` in this backbone's ``embedding_space``."""
        if self.embedding_space == "tangent":
            return torch.nn.Parameter(self.manifold.logmap0(points).detach())
        return ManifoldParameter(points, manifold=self.manifold, requires_grad=True)

    def node_tangent(self, embedding):
        """Tangent vectors at the origin of a node-embedding parameter."""
        return embedding if self.embedding_space == "tangent" else self.manifold.logmap0(embedding)

    def store_points(self, embedding, points):
        """Overwrite a node-embedding parameter with ``points`` (no gradient)."""
        with torch.no_grad():
            embedding.copy_(self.manifold.logmap0(points) if self.embedding_space == "tangent" else points)

    def points_from_lorentz(self, tangent):
        """Points of this manifold for tangent vectors of the hyperboloid's origin (the convention of
        the released phase-1 output): exp_0, capped, on the hyperboloid."""
        return self.manifold.expmap0_capped(tangent)

    def user_item_graph(self, dataset):
        """Row-normalised user-item graph with self loops over n_users + n_items nodes."""
        inter = dataset.inter_matrix(form="coo")
        adj = bipartite_adjacency(inter.row, inter.col, self.n_users, self.n_items)
        return SparseGraph.from_scipy(row_normalise_with_self_loops(adj), self.device)

    def id_tangent(self):
        """User and item ID embeddings as tangent vectors at the origin."""
        return self.node_tangent(self.user_embedding), self.node_tangent(self.item_embedding)

    def propagate(self, tangent, graph):
        """Node inputs (tangent space) -> node points on the manifold."""
        raise NotImplementedError

    def pair_loss(self, out, anchors, positives, negatives, margin):
        """Ranking loss on triples of node indices of ``out``."""
        raise NotImplementedError

    def extra_losses(self, out, interaction, inputs):
        """Auxiliary loss terms of the backbone (none by default), given the propagated points ``out`` of the
        user-item graph and the tangent ``inputs`` they were propagated from."""
        return {}

    def sqdist_pairs(self, x, y):
        return sqdist_pairs(x, y)

    def hyperboloid_points(self, points):
        """The points in the hyperboloid model (k = 1, time first); they already are for Lorentz backbones."""
        return points

    def ranking_scores(self, users, items):
        """Full-ranking scores: <u, i>_L = -cosh(d(u, i)), which orders items exactly as -d^2
        without the arcosh (only the order matters to Recall/NDCG)."""
        return -minkowski_gram(users, items)

    # ----- RecBole API -----------------------------------------------------
    def interaction_loss(self, out, interaction, margin, inputs):
        """Loss terms of one RecBole batch given propagated user+item points ``out`` (from ``inputs``)."""
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID] + self.n_users
        neg = interaction[self.NEG_ITEM_ID] + self.n_users
        terms = {"rank": self.pair_loss(out, users, pos, neg, margin)}
        terms.update(self.extra_losses(out, interaction, inputs))
        return terms

    def node_inputs(self):
        """Tangent inputs of the user-item graph: the ID embeddings, users then items."""
        return torch.cat(self.id_tangent(), dim=0)

    def forward(self):
        return self.propagate(self.node_inputs(), self.ui_graph)

    def calculate_loss(self, interaction):
        self._eval_cache = None
        inputs = self.node_inputs()
        terms = self.interaction_loss(self.propagate(inputs, self.ui_graph), interaction, self.margin, inputs)
        self.last_loss_names = tuple(terms)
        return tuple(terms.values())

