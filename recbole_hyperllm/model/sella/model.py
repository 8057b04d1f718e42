"""SeLLaRec: SeLLa-Rec (Wang et al., "Enhancing LLM-based Recommendation through Semantic-Aligned Collaborative
Knowledge", arXiv 2504.10107; public code wzhwzhwzh0921/SeLLa) as a RecBole context-aware (CTR) model.

Three steps (``steps.py`` runs the first two before RecBole's trainer, cached; RecBole trains the third):
1. a yes/no LLM (TALLRec-style): LoRA over prompts of the user's history titles and the candidate title,
   score P(Yes) = sigmoid(l_Yes - l_No) at the last position (``losses.yes_no_logit``);
2. LLM item embeddings = the last hidden state of ``"Movie: {title}"`` (base LLM, no adapter), and a matrix
   factorisation model s(u, i) = <e_u, e_i> trained with BCE on the labels plus the alignment InfoNCE between
   projector(e_i) = W2 GELU(W1 e_i) and the LLM item embedding (``losses.alignment_loss``);
3. ``<User_ID>`` = projector(e_u), ``<Item_ID>`` = projector(e_i) (the hybrid projection, initialised from step
   2's projector: the same module, trained on), ``<Warm_ID>`` = W_warm z_i (z_i: the LLM item embedding; W_warm
   starts as the identity) spliced into the prompt through ``inputs_embeds``; LoRA (initialised from step 1's
   adapter) and both projections trained with BCE on P(Yes); the MF embeddings stay as step 2 left them.

Which parameters train in each step is ``TRAINABLE`` (``enter_step``). ``sella_variant``: ``full`` (the three
steps), ``llm_only`` (step 1 alone, TALLRec-like), ``mf_only`` (step 2's MF alone); the last two are reported as
``before_training`` leaves them (no RecBole training).

Checkpoints hold the trained parameters only (adapters, projections, MF, the cached LLM item embeddings): the
frozen LLM weights come from ``llm_path`` (``state_dict`` / ``load_state_dict``); a 7B model is not copied into
every checkpoint.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import ContextRecommender
from recbole.utils import InputType
from torch import nn

from recbole_hyperllm.atomic import AtomicFileError
from recbole_hyperllm.errors import ConfigError, choice, integer, positive
from recbole_hyperllm.llm import LLMError, Projector, add_lora, load_causal_lm, splice_batch
from recbole_hyperllm.model.abstract import PluginModel
from recbole_hyperllm.model.sella.losses import yes_no_logit
from recbole_hyperllm.model.sella.prompts import (ITEM_TOKEN, USER_TOKEN, WARM_TOKEN, PromptBook, fill_placeholders,
                                                  item_embedding_prompt, item_text, recent_histories)

VARIANTS = ("full", "llm_only", "mf_only")
# step -> prefixes of the parameters that train in it (everything else is frozen)
TRAINABLE = {
    "step1": ("llm.",),                                  # LoRA adapters only (the base LLM is frozen by peft)
    "step2": ("user_cf.", "item_cf.", "projector."),     # MF embeddings and the alignment projector
    "step3": ("llm.", "projector.", "warm."),            # LoRA, the hybrid projection, the warm projection
}


def item_titles(config, dataset):
    """``[text of item i]`` (``item_text``: title and year) by internal item id; index 0 (padding) is ''.

    An item without a title, or a dataset without the title column, is an AtomicFileError naming the
    ``.item`` file, the item and the fix (SeLLaRec's prompts and item embeddings are made of titles)."""
    field, year_field = config["title_field"] or "movie_title", config["year_field"]
    path = os.path.join(config["data_path"], f"{config['dataset']}.item")
    if dataset.item_feat is None or field not in dataset.item_feat.columns:
        raise AtomicFileError(f"{path}: no '{field}' column loaded; SeLLaRec needs item titles: add the column to "
                              f"the .item file and to load_col (item: [item_id, {field}]), or set title_field")
    id2token = dataset.field2id_token[field]
    raw = dataset.item_feat[field]
    years = dataset.item_feat[year_field] if year_field and year_field in dataset.item_feat.columns else None
    titles, missing = [""], []
    for item in range(1, dataset.item_num):
        ids = raw[item].reshape(-1).tolist()
        title = " ".join(str(id2token[t]) for t in ids if t != 0).strip()
        if not title or title == "[PAD]":
            missing.append(str(dataset.id2token(dataset.iid_field, item)))
        year = dataset.field2id_token[year_field][int(years[item])] if years is not None else None
        titles.append(item_text(title, year))
    if missing:
        raise AtomicFileError(f"{path}: {len(missing)} item(s) without a '{field}' (first: item_id "
                              f"{missing[0]}); SeLLaRec's prompts need every item's title: add the titles or drop "
                              "those items' interactions")
    return titles


def training_rows(config, dataset):
    """(users, items, labels, order) of a split as numpy arrays; ``order`` is the timestamp when loaded, else
    the row index."""
    inter = dataset.inter_feat
    label = config["LABEL_FIELD"]
    if label not in inter.columns:
        raise ConfigError(f"no '{label}' field in the interactions: SeLLaRec is a CTR model; give labels with "
                          "threshold (e.g. threshold: {rating: 4}) or a label column")
    users = inter[config["USER_ID_FIELD"]].numpy()
    items = inter[config["ITEM_ID_FIELD"]].numpy()
    labels = inter[label].numpy()
    time_field = config["TIME_FIELD"]
    order = inter[time_field].numpy() if time_field and time_field in inter.columns else np.arange(len(users))
    return users, items, labels, order


class SeLLaRec(PluginModel, ContextRecommender):
    input_type = InputType.POINTWISE
    euclidean = True  # plain parameters: RecBole's learners, no manifold warning (config_check)

    @classmethod
    def trainer_class(cls):
        from recbole_hyperllm.model.sella.trainer import CTRTrainer

        return CTRTrainer

    @classmethod
    def side_files(cls, config):
        return {"item": [config["title_field"] or "movie_title"]}

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.USER_ID, self.ITEM_ID = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
        self.variant = choice(config, "sella_variant", VARIANTS, "full")
        self.history_len = integer(config, "history_len", 0, 5)
        self.llm_layers = integer(config, "llm_layers", 0, 0)
        self.lora = {"r": integer(config, "lora_r", 1, 8), "alpha": integer(config, "lora_alpha", 1, 16),
                     "dropout": float(config["lora_dropout"] or 0.0)}
        self.temperature = positive(config, "align_temperature", default=0.2)
        self.mf_dim = integer(config, "mf_embedding_size", 1, 256)
        self.projector_inner = integer(config, "projector_inner", 1, 1024)
        self.titles = item_titles(config, dataset)
        users, items, labels, order = training_rows(config, dataset)
        self.prompts = PromptBook(self.titles, recent_histories(users, items, labels, order, self.history_len),
                                  self.history_len, config["item_noun"] or "movie")
        self.user_cf = nn.Embedding(dataset.user_num, self.mf_dim)
        self.item_cf = nn.Embedding(dataset.item_num, self.mf_dim)
        nn.init.normal_(self.user_cf.weight, std=0.1)
        nn.init.normal_(self.item_cf.weight, std=0.1)
        self.llm = self.tokenizer = self.projector = self.warm = None
        self.register_buffer("item_llm", torch.zeros(dataset.item_num, 0))
        self.yes_id = self.no_id = None
        self.step = None

    # ----- the LLM and the modules sized by it ------------------------------------------------------------
    def attach_llm(self, config):
        """Load the causal LM (``llm_path``, None = the shipped SmolLM2-135M; ``llm_layers`` first layers) with a
        LoRA adapter, and the Yes/No token ids."""
        if self.llm is not None:
            return
        model, tokenizer = load_causal_lm(config["llm_path"], self.device, self.llm_layers or None)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.llm = add_lora(model, r=self.lora["r"], alpha=self.lora["alpha"], dropout=self.lora["dropout"])
        self.tokenizer = tokenizer
        yes = tokenizer(" Yes", add_special_tokens=False).input_ids
        no = tokenizer(" No", add_special_tokens=False).input_ids
        if not yes or not no or yes[0] == no[0]:
            raise LLMError(f"the tokenizer of llm_path {config['llm_path']} gives no distinct first tokens for "
                           "' Yes' and ' No'; use a model whose tokenizer has them")
        self.yes_id, self.no_id = yes[0], no[0]
        self.build_heads(self.llm.config.hidden_size)

    def build_heads(self, hidden):
        """The projector (MF -> hidden, step 2's alignment projector and step 3's hybrid projection), the warm
        projection (hidden -> hidden, the identity at first) and the LLM item embeddings' buffer."""
        if self.projector is not None:
            return
        self.projector = Projector(self.mf_dim, hidden, self.projector_inner).to(self.device)
        self.warm = nn.Linear(hidden, hidden).to(self.device)
        with torch.no_grad():
            self.warm.weight.copy_(torch.eye(hidden))
            self.warm.bias.zero_()
        self.item_llm = torch.zeros(self.item_cf.num_embeddings, hidden, device=self.device)

    def drop_llm(self):
        """Free the LLM (the ``mf_only`` variant needs it for the item embeddings only)."""
        self.llm = self.tokenizer = None

    def enter_step(self, step):
        """Only the parameters of ``TRAINABLE[step]`` train (LoRA: only its adapters within ``llm.``)."""
        self.step = step
        prefixes = TRAINABLE[step]
        for name, parameter in self.named_parameters():
            trainable = name.startswith(prefixes) and (not name.startswith("llm.") or "lora_" in name)
            parameter.requires_grad_(trainable)

    # ----- scores ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def compute_item_embeddings(self, batch_size=32, log=None):
        """z_i = last hidden state at the last position of ``"Movie: {title}"``, base LLM (adapter off)."""
        texts = [item_embedding_prompt(title, self.prompts.noun) for title in self.titles[1:]]
        was_training = self.llm.training
        self.llm.eval()
        rows = []
        with self.llm.disable_adapter():
            for start in range(0, len(texts), batch_size):
                embeds, mask = splice_batch(self.llm, self.tokenizer, [[t] for t in texts[start:start + batch_size]])
                out = self.llm(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True,
                               logits_to_keep=1)
                rows.append(out.hidden_states[-1][:, -1].float())
                if log and (start // batch_size) % 20 == 0:
                    log(f"step 2: LLM item embeddings {min(start + batch_size, len(texts))}/{len(texts)}")
        self.llm.train(was_training)
        self.item_llm = torch.cat([torch.zeros_like(rows[0][:1]), *rows]).to(self.device)
        return self.item_llm

    def special_tokens(self, users, items):
        """{placeholder: (B, H)}: projector(e_u), projector(e_i), warm(z_i)."""
        return {USER_TOKEN: self.projector(self.user_cf(users)), ITEM_TOKEN: self.projector(self.item_cf(items)),
                WARM_TOKEN: self.warm(self.item_llm[items])}

    def prompt_rows(self, users, items, with_tokens):
        """The batch's prompts as splice parts (placeholders filled with their vectors ``with_tokens``)."""
        rows = [self.prompts.parts(u, i, with_tokens) for u, i in zip(users.tolist(), items.tolist())]
        if not with_tokens:
            return rows
        vectors = self.special_tokens(users, items)
        return [fill_placeholders(parts, {k: v[r:r + 1] for k, v in vectors.items()}) for r, parts in enumerate(rows)]

    def yes_no_logits(self, users, items, with_tokens):
        """z = l_Yes - l_No at the last position of each row's prompt (P(Yes) = sigmoid(z))."""
        embeds, mask = splice_batch(self.llm, self.tokenizer, self.prompt_rows(users, items, with_tokens))
        logits = self.llm(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=1).logits
        return yes_no_logit(logits, self.yes_id, self.no_id)

    def mf_logits(self, users, items):
        """s(u, i) = <e_u, e_i> (step 2's collaborative model)."""
        return (self.user_cf(users) * self.item_cf(items)).sum(-1)

    def logits(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        if self.variant == "mf_only":
            return self.mf_logits(users, items)
        return self.yes_no_logits(users, items, with_tokens=self.variant == "full")

    def calculate_loss(self, interaction):
        """Step 3: BCE of P(Yes) (with the three special tokens) against the label."""
        return F.binary_cross_entropy_with_logits(self.logits(interaction), interaction[self.LABEL].float())

    def predict(self, interaction):
        return torch.sigmoid(self.logits(interaction))

    # ----- RecBole / plugin hooks -------------------------------------------------------------------------
    def before_training(self, config, train_data, valid_data, logger, show_progress=False, resume=None):
        from recbole_hyperllm.model.sella.steps import run_steps

        return run_steps(self, config, train_data, valid_data, logger)

    def skips_training(self):
        return self.variant != "full"

    def _kept(self, key):
        return not key.startswith("llm.") or "lora_" in key

    def state_dict(self, *args, **kwargs):
        """The trained state only: the frozen LLM weights are left out (they come from ``llm_path``)."""
        full = super().state_dict(*args, **kwargs)
        for key in [k for k in full if not self._kept(k)]:
            del full[key]
        return full

    def load_state_dict(self, state_dict, strict=True, assign=False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if self._kept(k)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"SeLLaRec checkpoint does not fit the model:\n missing {missing[:5]}, unexpected "
                               f"{result.unexpected_keys[:5]}")
        return result
