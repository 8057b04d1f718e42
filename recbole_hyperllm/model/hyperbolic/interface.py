"""The backbone interface: exactly what a framework (``model/framework``) may use of a backbone.

A backbone is a RecBole ``GeneralRecommender`` that can also be driven from the outside on graphs and
inputs it does not own. ``HyperbolicBackbone`` (``base.py``) implements the shared parts; a new backbone
overrides ``propagate`` and ``pair_loss`` (and, if it has them, ``extra_losses`` and the geometry methods).
``tests/test_frameworks.py`` checks that every framework module touches a backbone only through these names
and runs every framework over every registered backbone.
"""
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backbone(Protocol):
    # ----- attributes ------------------------------------------------------------------------------
    manifold: object          # expmap0, expmap0_capped, logmap0 of the backbone's model of hyperbolic space
    embedding_size: int       # width of a node's tangent vector / point
    margin: float             # the backbone's ranking margin (m2)
    ui_graph: object          # the row-normalised user-item graph (n_users + n_items nodes)
    user_embedding: object    # node-embedding parameters (see ``embedding_space``)
    item_embedding: object
    loss_config_keys: tuple   # config keys of the backbone's own loss (part of cache keys)
    loss_reduction: str       # "sum" or "mean": how pair_loss reduces over the triples of a batch

    # ----- node embeddings ------------------------------------------------------------------------
    def new_node_embeddings(self, n_nodes, tangent=None):
        """A trainable node-embedding parameter of ``n_nodes`` rows (uniform tangents when not given)."""

    def node_tangent(self, embedding):
        """Tangent vectors at the origin of a node-embedding parameter."""

    def store_points(self, embedding, points):
        """Overwrite a node-embedding parameter with ``points`` (no gradient)."""

    def points_from_lorentz(self, tangent):
        """Points of this manifold for tangent vectors at the hyperboloid's origin."""

    def id_tangent(self):
        """(users, items): the ID embeddings as tangent vectors at the origin."""

    # ----- propagation and losses -----------------------------------------------------------------
    def propagate(self, tangent, graph):
        """Node inputs (tangent vectors at the origin) -> node points, over any row-normalised graph."""

    def interaction_loss(self, out, interaction, margin, inputs):
        """{name: scalar} of one RecBole batch: the ranking loss and the backbone's own terms, given the
        propagated points ``out`` of the user-item graph and the ``inputs`` they were propagated from."""

    def pair_loss(self, out, anchors, positives, negatives, margin):
        """The backbone's ranking loss on triples of node indices of ``out``, reduced as ``loss_reduction``."""

    def sqdist_pairs(self, x, y):
        """Squared hyperbolic distance of row-aligned points."""

    def ranking_scores(self, users, items):
        """Full-ranking scores (users x items), ordered as -d^2."""

    def hyperboloid_points(self, points):
        """The points in the hyperboloid model (k = 1, time first)."""

    def begin_epoch(self, epoch):
        """The trainer starts training epoch ``epoch``."""

    # ----- several processes (recbole_hyperllm/distributed.py) -----------------------------------------
    def share_terms(self):
        """Names of the loss terms that are this process's share of the full-batch loss."""

    def set_shard(self, rank, world):
        """This process's rank and the world size."""


BACKBONE_INTERFACE = frozenset(list(Backbone.__annotations__) + [n for n in vars(Backbone) if not n.startswith("_")])
