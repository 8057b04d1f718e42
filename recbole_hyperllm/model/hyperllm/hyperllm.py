"""HyperLLM (Cheng et al., SIGIR 2025), a framework (``model/framework``) over any hyperbolic backbone.

``HyperLLM`` owns a backbone (``backbone_class``) and uses only its interface
(``recbole_hyperllm.model.hyperbolic.interface``). ``compose(HyperLLM, HGCF)`` gives the
RecBole model ``HyperLLM_HGCF``.

* Structural (Sec. 4.3, Eq. 14-16): tag ID embeddings, the backbone's own
  propagation over the tag-tag + tag-item graph with the item ID embeddings
  shared with the user-item graph, the ranking loss with margin m3
  (``tag_margin``) and the exact hyperbolic InfoNCE between the two item views
  with weight w (``cl_weight``) and temperature tau (``cl_temperature``).
* Semantic (Sec. 4.2, Eq. 8-12): phase 1 (``phase = "meta"``) trains only a
  K-expert MoE (``num_experts``) on frozen semantic embeddings through the frozen
  backbone with margin m1 (``meta_margin``); phase 2 initialises the user and
  item ID embeddings with the MoE outputs. Phase 1 is driven by
  ``recbole_hyperllm.phase1`` (the model's ``before_training`` step).
"""
from dataclasses import dataclass

import torch

from recbole_hyperllm.distributed import part
from recbole_hyperllm.errors import CheckpointError, choice
from recbole_hyperllm.graph import SparseGraph, row_normalise_with_self_loops, tag_graph_adjacency
from recbole_hyperllm.losses import hyperbolic_infonce, hyperbolic_infonce_in_batch
from recbole_hyperllm.model.framework.base import Framework
from recbole_hyperllm.model.framework.semantic import semantic_vectors
from recbole_hyperllm.model.hyperllm.moe import MixtureOfExperts
from recbole_hyperllm.model.hyperllm.sampler import TagTripleSampler
from recbole_hyperllm.model.hyperllm import tag_data

VARIANTS = ("HyperLLM", "Structural", "Semantic", "Base")
ABLATIONS = ("none", "wo_meta", "only_semantic", "wo_cl")


@dataclass(frozen=True)
class VariantPlan:
    """What a (variant, ablation, semantic_init) triple switches on."""

    structural: bool
    semantic: bool
    contrastive: bool
    two_phase: bool       # phase 1 (MoE on frozen backbone) then phase 2
    joint_moe: bool       # w/o Meta: the MoE output is the embedding, trained with everything
    only_phase1: bool     # only Semantic: report the phase-1 model
    given_phase1: bool    # phase-1 output read from .userinit/.iteminit

    @classmethod
    def from_config(cls, config):
        variant = choice(config, "variant", VARIANTS, "HyperLLM")
        ablation = str(choice(config, "ablation", ABLATIONS, "none"))
        init = choice(config, "semantic_init", ("moe", "given"), "moe")
        structural = variant in ("HyperLLM", "Structural") and ablation != "only_semantic"
        semantic = variant in ("HyperLLM", "Semantic") or ablation == "only_semantic"
        joint = semantic and ablation == "wo_meta"
        given = semantic and init == "given" and not joint
        return cls(
            structural=structural,
            semantic=semantic,
            contrastive=structural and ablation != "wo_cl",
            two_phase=semantic and not joint and not given,
            joint_moe=joint,
            only_phase1=ablation == "only_semantic",
            given_phase1=given,
        )

    def atomic_files(self):
        """Suffix -> columns of the atomic files this plan reads."""
        files = {}
        if self.structural:
            files.update(tag_data.STRUCTURAL_FILES)
        if self.two_phase or self.joint_moe:
            files.update(tag_data.SEMANTIC_FILES)
        if self.given_phase1:
            files.update(tag_data.GIVEN_PHASE1_FILES)
        return files


class HyperLLM(Framework):
    framework_name = "HyperLLM"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.plan = VariantPlan.from_config(config)
        self.meta_margin = config["meta_margin"]
        self.phase = "integrate"
        if self.plan.structural:
            self._build_structural(config, dataset)
        if self.plan.two_phase or self.plan.joint_moe:
            self._build_semantic(config, dataset)
        self._trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        if self.plan.given_phase1:
            users = tag_data.load_node_vectors(dataset, "userinit", self.USER_ID, "user_init", self.n_users)
            items = tag_data.load_node_vectors(dataset, "iteminit", self.ITEM_ID, "item_init", self.n_items)
            for suffix, vectors in (("userinit", users), ("iteminit", items)):
                tag_data.require_width(tag_data.atomic_path(dataset, suffix), vectors, self.backbone.embedding_size)
            self.initialise_id_embeddings(users, items, to_points=self.backbone.points_from_lorentz)

    # ----- declarations (PluginModel) ---------------------------------------------------------------
    @classmethod
    def side_files(cls, config):
        return VariantPlan.from_config(config).atomic_files()

    def before_training(self, config, train_data, valid_data, logger, show_progress=False, resume=None):
        """Phase 1 (cached; continued from ``resume``, a phase-1 progress state, when given) when the plan has
        two phases; phase 2 starts from its outputs (Eq. 12)."""
        if not self.plan.two_phase:
            if resume is not None:
                raise CheckpointError(f"resume_from: {resume['progress_file']} is a phase-1 progress file, but "
                                      f"this {config['model']} has no phase 1 (variant/ablation differ from the "
                                      "interrupted run's); resume with its settings")
            return None
        from recbole_hyperllm.phase1 import run_phase1

        user_t, item_t, info = run_phase1(config, self, train_data, valid_data, logger, show_progress=show_progress,
                                          resume=resume)
        if not self.plan.only_phase1:
            self.initialise_id_embeddings(user_t, item_t)
        return info

    def skips_training(self):
        return self.plan.only_phase1

    def begin_epoch(self, epoch):
        super().begin_epoch(epoch)
        if self.plan.structural:
            self.tag_sampler.begin_epoch()

    @property
    def tag_sampler_state(self):
        """The tag sampler's stream, kept in RecBole's ``other_parameter`` of every checkpoint."""
        return self.tag_sampler.state()

    @tag_sampler_state.setter
    def tag_sampler_state(self, state):
        self.tag_sampler.load_state(state)

    # ----- construction ---------------------------------------------------
    def _build_structural(self, config, dataset):
        parent, child, link_tags, link_items, n_tags = tag_data.load_tag_graph(dataset)
        self.n_tags = n_tags
        self.tag_margin = config["tag_margin"]
        self.cl_weight = config["cl_weight"]
        self.cl_temperature = config["cl_temperature"]
        self.cl_scope = choice(config, "cl_scope", ("all", "batch"), "all")
        self.cl_chunk_size = config["cl_chunk_size"]  # None: chosen for the device (chunk_rows)
        self.cl_compile = config["cl_compile"]  # None: losses.use_fused_chain chooses
        adj = tag_graph_adjacency(parent, child, link_tags, link_items, n_tags, self.n_items)
        self.tag_graph = SparseGraph.from_scipy(row_normalise_with_self_loops(adj), self.device)
        self.tag_embedding = self.backbone.new_node_embeddings(n_tags)
        batches = max(1, -(-dataset.inter_num // config["train_batch_size"]))
        self.tag_sampler = TagTripleSampler(
            parent, child, link_tags, link_items, n_tags, self.n_items, batches, config["seed"],
            passes=config["tag_edge_passes"] or 1,
        )
        self.other_parameter_name = ["tag_sampler_state"]

    def _build_semantic(self, config, dataset):
        users, items = semantic_vectors(self, dataset)
        # The authors map the text embeddings onto the hyperboloid and back (phase1_model.py).
        self.register_buffer("user_semantic", self._semantic_tangent(users).to(self.device))
        self.register_buffer("item_semantic", self._semantic_tangent(items).to(self.device))
        self.moe = MixtureOfExperts(users.size(1), config["embedding_size"], config["num_experts"])

    def _semantic_tangent(self, vectors):
        # no_grad + detach: geoopt's TorchScript maps can return outputs that require grad
        # once the JIT has specialised them, which would chain every batch to this buffer.
        with torch.no_grad():
            return self.manifold.logmap0(self.manifold.expmap0(vectors, project=True)).detach()

    # ----- phases -----------------------------------------------------------
    def enter_meta_phase(self):
        """Phase 1: only the MoE trains (Eq. 11); backbone, embeddings and tags are frozen."""
        self.phase = "meta"
        for name, param in self.named_parameters():
            param.requires_grad_(name.startswith("moe."))

    def semantic_outputs(self):
        """x_u, x_i of Eq. (8) for every user and item (tangent vectors at the origin)."""
        with torch.no_grad():
            return self.moe(self.user_semantic), self.moe(self.item_semantic)

    def initialise_id_embeddings(self, user_tangent, item_tangent, to_points=None):
        """Eq. (12): e_u = x_u, e_i = x_i (mapped onto the manifold by ``to_points``, default the
        capped exp_0); the MoE is frozen afterwards."""
        to_points = to_points or self.manifold.expmap0_capped
        expected = (self.n_users, self.backbone.embedding_size), (self.n_items, self.backbone.embedding_size)
        if (tuple(user_tangent.shape), tuple(item_tangent.shape)) != expected:
            raise ValueError(
                f"phase-1 output has shapes {tuple(user_tangent.shape)}, {tuple(item_tangent.shape)}; "
                f"this dataset and embedding_size need {expected[0]}, {expected[1]}"
            )
        with torch.no_grad():
            self.backbone.store_points(self.backbone.user_embedding, to_points(user_tangent.to(self.device)))
            self.backbone.store_points(self.backbone.item_embedding, to_points(item_tangent.to(self.device)))
        self.phase = "integrate"
        for name, param in self.named_parameters():
            param.requires_grad_(name in self._trainable and not name.startswith("moe."))

    # ----- losses -----------------------------------------------------------
    def node_inputs(self):
        """User and item inputs of the user-item graph for the current phase: the MoE outputs in phase 1
        and in w/o Meta, the ID embeddings otherwise."""
        if self.phase == "meta" or self.plan.joint_moe:
            return torch.cat([self.moe(self.user_semantic), self.moe(self.item_semantic)])
        return super().node_inputs()

    def ranking_margin(self):
        return self.meta_margin if self.phase == "meta" else self.margin

    def structural_terms(self, ui_out, item_tangent, interaction):
        """L_tag (Eq. 14) and w * L_cl (Eq. 15-16)."""
        tag_tangent = self.backbone.node_tangent(self.tag_embedding)
        tag_out = self.backbone.propagate(torch.cat([tag_tangent, item_tangent]), self.tag_graph)
        anchors, positives, negatives = self.tag_sampler.next_batch(self.device)
        mine = part(anchors.numel(), *self.shard)  # every process draws the same triples and takes its part
        anchors, positives, negatives = anchors[mine], positives[mine], negatives[mine]
        terms = {"tag": self.backbone.pair_loss(tag_out, anchors, positives, negatives, self.tag_margin)}
        if self.plan.contrastive:
            # row 0 is RecBole's padding item; Eq. 16 is computed on the hyperboloid (an isometric
            # copy of the points for backbones on another model of hyperbolic space, e.g. HGCH)
            items_ui = self.backbone.hyperboloid_points(ui_out[self.n_users + 1:])
            items_tag = self.backbone.hyperboloid_points(tag_out[self.n_tags + 1:])
            if self.cl_scope == "batch":
                index = torch.cat([interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]]) - 1
                cl = hyperbolic_infonce_in_batch(items_ui, items_tag, self.cl_temperature, index)
            else:
                cl = hyperbolic_infonce(items_ui, items_tag, self.cl_temperature, self.chunk_rows(items_ui),
                                        rows=part(items_ui.size(0), *self.shard), fused=self.cl_compile)
            terms["cl"] = self.cl_weight * cl
        return terms

    CPU_CHUNK_ROWS = 128  # measured best on 2 CPU cores (cache-sized Gram chunks)
    GPU_CHUNK_FLOATS = 1 << 26  # 256 MB of float32 Gram per chunk: Beauty's 6086 items in one chunk

    def chunk_rows(self, items):
        """Rows per chunk of the exact Eq. 16: ``cl_chunk_size`` when set; else 128 on the CPU and, on an
        accelerator, as many rows as keep a chunk's Gram block under GPU_CHUNK_FLOATS (fewer, larger kernels)."""
        if self.cl_chunk_size:
            return self.cl_chunk_size
        if items.device.type == "cpu":
            return self.CPU_CHUNK_ROWS
        return max(self.CPU_CHUNK_ROWS, self.GPU_CHUNK_FLOATS // max(1, items.size(0)))

    def share_terms(self):
        """Eq. 16's rows and the tag triples are split across processes: each computes its part (a summed
        tag loss; over a mean one each process estimates the whole)."""
        tag = {"tag"} if self.backbone.loss_reduction == "sum" else set()
        return super().share_terms() | tag | {"cl"}

    def framework_losses(self, inputs, out, interaction, context):
        if self.plan.structural and self.phase != "meta":
            return self.structural_terms(out, inputs[self.n_users:], interaction)
        return {}
