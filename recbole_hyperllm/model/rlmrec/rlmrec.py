"""RLMRec-Con and RLMRec-Gen (Ren et al., "Representation Learning with Large Language Models for
Recommendation", WWW 2024) as frameworks over any hyperbolic backbone.

Written from the paper and a reading of its public code (github HKUDS/RLMRec,
``encoder/models/general_cf/lightgcn_plus.py`` (Con), ``lightgcn_gene.py`` (Gen), ``loss_utils.py``,
``aug_utils.py``). Both align collaborative representations with the semantic embeddings
(``NAME.useremb`` / ``NAME.itememb``, the same inputs every framework here reads):

* **Con** (contrastive alignment): an MLP maps every semantic embedding s (width D) into the
  representation space, f(s) = W2 LeakyReLU(W1 s + b1) + b2 (D -> (D + d) / 2 -> d, xavier-uniform
  weights). For the batch's users u, positive items i and negative items j, with the propagated
  representation e and cosine similarity cos,
      L_con = sum_{x in batch} -log( exp(cos(e_x, f(s_x)) / t) / sum_{y in Y_x} exp(cos(e_x, f(s_y)) / t) )
  where Y_x is every (real) user for a user anchor, and the batch's positives (negatives) for a positive
  (negative) anchor, duplicates included, as the reference's ``cal_infonce_loss`` calls (on the CPU each
  distinct row is computed once, weighted by its count: the same sum, ~40% fewer products). The term is
  ``kd_weight * L_con`` (divided by the batch size for a mean ranking loss).
* **Gen** (generative alignment): ``NodeMask`` replaces max(1, int(N mask_ratio)) random user/item input
  rows by a learnable token (zero-initialised); the masked inputs are propagated (the ranking loss is
  computed on this propagation too, as in the reference); at the masked nodes an MLP g maps the output
  into the semantic space (d -> (D + d) / 2 -> D) and
      L_gen = mean_{m masked} -log( exp(cos(g(e_m), s_m) / t) / sum_{m' masked} exp(cos(g(e_m), s_m') / t) ).
  The term is ``recon_weight * B * L_gen`` (B: the batch's triples, 1 for a mean ranking loss; see the
  loss scale below).

Hyperbolic adaptation: both alignments are computed in the tangent space at the origin, on
log_0 of the propagated points (which is the HGCF-family encoder's own pre-exp representation). The
alternative, -d^2 / t on the hyperboloid as HyperLLM's Eq. 16, would put the MLP output on the manifold
and make the alignment depend on the distance from the origin, which encodes a node's depth in the
hierarchy and has no counterpart in a text embedding; cosine in the tangent space aligns directions
only, keeps RLMRec's loss exactly, and lets its temperatures (tuned for cosine logits) carry over. The
masked tokens and the MLPs are Euclidean parameters; masking replaces tangent inputs, before exp_0.

Loss scale: the reference divides its BPR and Con losses by the batch size and averages Gen over the
masked nodes. The backbones here declare how their ranking loss reduces over a batch
(``loss_reduction``): a sum (Eq. 6, the default) or a mean (HGCH with ``hgch_loss_mean``). With a sum,
Con is a sum over the batch and Gen's mean is multiplied by the batch size B, so each term keeps the
reference's ratio to the ranking loss; with a mean, both are the reference's batch means.
Padding rows (RecBole's user 0 and item 0) are never masked.
"""
import torch
import torch.nn.functional as F
from torch import nn

from recbole_hyperllm.errors import ConfigError, positive
from recbole_hyperllm.model.framework.semantic import SemanticFramework

__all__ = ["RLMRecCon", "RLMRecGen", "cosine_infonce", "grouped", "masked_cosine_infonce", "bridge_mlp"]

COSINE_EPS = 1e-8


def bridge_mlp(input_dim, output_dim):
    """input -> (input + output) / 2 -> output with LeakyReLU, xavier-uniform weights (RLMRec's ``mlp``)."""
    hidden = (input_dim + output_dim) // 2
    mlp = nn.Sequential(nn.Linear(input_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, output_dim))
    for layer in (mlp[0], mlp[2]):
        nn.init.xavier_uniform_(layer.weight)
    return mlp


def _unit(x):
    return x / torch.sqrt(COSINE_EPS + x.pow(2).sum(dim=-1, keepdim=True))


class _RowLogSumExp(torch.autograd.Function):
    """sum_x w_x log sum_y exp(<a_x, c_y> / tau + b_y) in row chunks, the gradient formed in the same pass:
    with P = softmax_y(<a_x, c_y> / tau + b_y), d/da_x = w_x sum_y P_xy c_y / tau and
    d/dc_y = sum_x w_x P_xy a_x / tau (row weights w and column offsets b are constants; None: 1 and 0).
    The (rows x candidates) matrix never exists whole and autograd keeps none of it for backward."""

    @staticmethod
    def forward(ctx, a, c, tau, chunk, row_weights, column_offsets):
        total = a.new_zeros(())
        grad_a, grad_c = torch.empty_like(a), torch.zeros_like(c)
        for start in range(0, a.size(0), chunk):
            rows = a[start:start + chunk]
            logits = rows @ c.t()
            logits.div_(tau)
            if column_offsets is not None:
                logits.add_(column_offsets)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            probabilities = logits.sub_(lse).exp_().div_(tau)
            if row_weights is not None:
                weights = row_weights[start:start + chunk].unsqueeze(1)
                lse = lse * weights
                probabilities.mul_(weights)
            total = total + lse.sum()
            grad_a[start:start + chunk] = probabilities @ c
            grad_c.addmm_(probabilities.t(), rows)
        ctx.save_for_backward(grad_a, grad_c)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_a, grad_c = ctx.saved_tensors
        return grad_a * grad_output, grad_c * grad_output, None, None, None, None


LSE_CHUNK = 1024  # rows per chunk (a 1024 x 4096 float32 block is 16 MB)


def cosine_infonce(anchors, targets, candidates, temperature, anchor_counts=None, candidate_counts=None):
    """sum_x w_x [ -cos(a_x, t_x) / tau + log sum_y n_y exp(cos(a_x, c_y) / tau) ] (RLMRec ``cal_infonce_loss``
    with w = n = 1); the log-sum-exp over all candidates is ``_RowLogSumExp`` (same value and gradient as
    autograd's). Counts w_x / n_y stand for rows repeated w_x / n_y times (``grouped``): the same sum over
    the repeated rows, computed once per distinct row."""
    a, t, c = _unit(anchors), _unit(targets), _unit(candidates)
    aligned = (a * t).sum(dim=-1)
    weights = None if anchor_counts is None else anchor_counts.to(a.dtype)
    offsets = None if candidate_counts is None else candidate_counts.to(c.dtype).log()
    aligned = aligned.sum() if weights is None else (weights * aligned).sum()
    return -aligned / temperature + _RowLogSumExp.apply(a, c, float(temperature), LSE_CHUNK, weights, offsets)


def cosine_infonce_reference(anchors, targets, candidates, temperature):
    """``cosine_infonce`` written plainly with autograd (the whole matrix at once, rows repeated); for tests."""
    a, t, c = _unit(anchors), _unit(targets), _unit(candidates)
    return (-(a * t).sum(dim=-1) / temperature + torch.logsumexp(a @ c.t() / temperature, dim=-1)).sum()


def grouped(ids):
    """(distinct ids, how often each occurs) on the CPU, where a repeated anchor costs a full row of the
    candidate product (a 4096-triple Beauty batch holds about 3100 distinct users, 2400 distinct positive
    and 3000 distinct negative items); elsewhere (ids, None): ``torch.unique`` would wait on the host every
    step, for products an accelerator does fast."""
    if ids.device.type != "cpu":
        return ids, None
    return torch.unique(ids, return_counts=True)


def masked_cosine_infonce(x, y, temperature):
    """mean_m -log softmax_m'(cos(x_m, y_m') / tau)[m] (RLMRec ``ssl_con_loss``, without its 1e-8 guards)."""
    logits = F.normalize(x) @ F.normalize(y).t() / temperature
    return (torch.logsumexp(logits, dim=-1) - logits.diagonal()).mean()


class _Alignment(SemanticFramework):
    """The tangent representation of propagated points and the loss scale of the backbone."""

    def batch_scale(self, interaction):
        """B for a backbone whose ranking loss sums over the batch's B triples, 1 for one that averages."""
        return len(interaction) if self.backbone.loss_reduction == "sum" else 1

    def share_terms(self):
        """Over a summed ranking loss the alignment term is scaled by the batch, so it is a share too."""
        own = {"con", "gen"} if self.backbone.loss_reduction == "sum" else set()
        return super().share_terms() | own

    def representation(self, points):
        """log_0 of propagated points: the alignment's view of them."""
        return self.manifold.logmap0(points)


class RLMRecCon(_Alignment):
    framework_name = "RLMRecCon"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.kd_weight = positive(config, "kd_weight", allow_zero=True)
        self.kd_temperature = positive(config, "kd_temperature")
        self.mlp = bridge_mlp(self.semantic_dim, config["embedding_size"])

    def framework_losses(self, inputs, out, interaction, context):
        rep = self.representation(out)
        profile_users = self.mlp(self.user_semantic)
        users, user_counts = grouped(interaction[self.USER_ID])
        loss = cosine_infonce(rep[users], profile_users[users], profile_users[1:], self.kd_temperature, user_counts)
        for items in (interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]):
            items, counts = grouped(items)  # the batch's items are both the anchors and the candidates
            profile = self.mlp(self.item_semantic[items])
            loss = loss + cosine_infonce(rep[self.n_users + items], profile, profile, self.kd_temperature,
                                         counts, counts)
        return {"con": self.kd_weight * loss * self.batch_scale(interaction) / len(interaction)}


class RLMRecGen(_Alignment):
    framework_name = "RLMRecGen"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.mask_ratio = positive(config, "mask_ratio")
        if self.mask_ratio >= 1.0:
            raise ConfigError(f"config key 'mask_ratio' is {self.mask_ratio}; it must be below 1")
        self.recon_weight = positive(config, "recon_weight", allow_zero=True)
        self.re_temperature = positive(config, "re_temperature")
        width = self.node_inputs().size(1)
        self.mask_token = nn.Parameter(torch.zeros(1, width, device=self.device))
        self.mlp = bridge_mlp(width, self.semantic_dim)
        self.register_buffer("node_semantic", torch.cat([self.user_semantic, self.item_semantic]))
        # real nodes only: RecBole's padding user 0 and item 0 are never masked
        real = torch.ones(self.n_users + self.n_items, dtype=torch.bool)
        real[[0, self.n_users]] = False
        self.register_buffer("maskable", torch.nonzero(real).squeeze(1).to(self.device), persistent=False)

    def draw_masked_nodes(self):
        """max(1, int(N mask_ratio)) distinct real nodes, N = real users + items (RLMRec ``NodeMask``)."""
        count = max(1, int(self.maskable.numel() * self.mask_ratio))
        return self.maskable[torch.randperm(self.maskable.numel(), device=self.maskable.device)[:count]]

    def training_inputs(self):
        inputs = self.node_inputs()
        masked = self.draw_masked_nodes()
        keep = torch.ones(inputs.size(0), 1, device=inputs.device).index_fill_(0, masked, 0.0)  # no host sync
        return inputs * keep + self.mask_token * (1.0 - keep), masked

    def framework_losses(self, inputs, out, interaction, masked):
        reconstructed = self.mlp(self.representation(out[masked]))
        loss = masked_cosine_infonce(reconstructed, self.node_semantic[masked], self.re_temperature)
        return {"gen": self.recon_weight * self.batch_scale(interaction) * loss}
