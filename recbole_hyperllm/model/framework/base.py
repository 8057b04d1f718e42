"""A framework: a way of adding LLM knowledge to a recommender, written once over the backbone interface.

``compose(Framework, Backbone)`` gives the RecBole model ``<Framework>_<Backbone>``: the framework owns a
backbone (``self.backbone``) and uses only the names declared in ``model/hyperbolic/interface.py``. One
training step is

    inputs = training_inputs()                    # tangent vectors at the origin, users then items
    out    = backbone.propagate(inputs, backbone.ui_graph)
    terms  = backbone.interaction_loss(out, batch, ranking_margin(), inputs) + framework_losses(...)

and evaluation propagates ``node_inputs()`` (the same inputs without training-time noise such as
RLMRec-Gen's masks). A framework overrides ``node_inputs``, ``training_inputs``, ``framework_losses`` and the
``PluginModel`` declarations it needs.
"""
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_hyperllm.model.abstract import PluginModel
from recbole_hyperllm.model.hyperbolic.base import PropagatedScoring

__all__ = ["Framework", "compose"]


class Framework(PluginModel, PropagatedScoring, GeneralRecommender):
    input_type = InputType.PAIRWISE
    backbone_class = None
    framework_name = None   # "HyperLLM", "KAR", ...: its YAML is properties/model/<framework_name>.yaml

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if self.backbone_class is None:
            raise TypeError(f"{type(self).__name__} needs a backbone: use compose({type(self).__name__}, Backbone)")
        self.backbone = self.build_backbone(config, dataset)
        self.manifold = self.backbone.manifold
        self.margin = config["margin"]

    def build_backbone(self, config, dataset):
        return self.backbone_class(config, dataset)

    # ----- declarations --------------------------------------------------------------------------
    @classmethod
    def property_names(cls):
        """properties/model/<Backbone>.yaml, <Framework>.yaml, then <Framework>_<Backbone>.yaml."""
        return (cls.backbone_class.__name__, cls.framework_name, cls.__name__)

    def begin_epoch(self, epoch):
        self.backbone.begin_epoch(epoch)

    def set_shard(self, rank, world):
        super().set_shard(rank, world)
        self.backbone.set_shard(rank, world)

    def share_terms(self):
        """The backbone's share terms; a framework adds its own."""
        return self.backbone.share_terms()

    # ----- one step --------------------------------------------------------------------------------
    def node_inputs(self):
        """Tangent inputs of the user-item graph (users then items) used for evaluation."""
        return torch.cat(self.backbone.id_tangent(), dim=0)

    def training_inputs(self):
        """(inputs, context) of one training step; ``context`` is handed to ``framework_losses``."""
        return self.node_inputs(), None

    def ranking_margin(self):
        return self.margin

    def framework_losses(self, inputs, out, interaction, context):
        """{name: scalar}: the framework's own loss terms (none by default)."""
        return {}

    def forward(self):
        return self.backbone.propagate(self.node_inputs(), self.backbone.ui_graph)

    def calculate_loss(self, interaction):
        self._eval_cache = None
        inputs, context = self.training_inputs()
        out = self.backbone.propagate(inputs, self.backbone.ui_graph)
        terms = self.backbone.interaction_loss(out, interaction, self.ranking_margin(), inputs)
        terms.update(self.framework_losses(inputs, out, interaction, context))
        self.last_loss_names = tuple(terms)
        return tuple(terms.values())

    def sqdist_pairs(self, x, y):
        return self.backbone.sqdist_pairs(x, y)

    def ranking_scores(self, users, items):
        return self.backbone.ranking_scores(users, items)


def compose(framework_class, backbone_class):
    """The RecBole model class ``<Framework>_<Backbone>``, registered in the framework's module so that
    pickles (RecBole checkpoints) find it."""
    import sys

    name = f"{framework_class.framework_name}_{backbone_class.__name__}"
    model = type(name, (framework_class,), {
        "backbone_class": backbone_class, "__module__": framework_class.__module__, "__qualname__": name,
        "__doc__": f"{framework_class.framework_name} over {backbone_class.__name__}."})
    setattr(sys.modules[framework_class.__module__], name, model)
    return model
