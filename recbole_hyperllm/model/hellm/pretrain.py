"""HeLLM stage 1 as a RecBole GeneralRecommender: ``HeLLM_Pretrain`` (Xu et al. 2025, arXiv 2504.10541, Sec. 3.2;
public pre-training code Xu107/MMHCL, read to understand it, written anew here).

Three views of the same ID embeddings E_u, E_i (d = ``pre_embedding_size``):

* user-item graph (LightGCN): [G_u; G_i] = 1/(L+1) sum_{l=0..L} A_hat^l [E_u; E_i]  (``pre_layers`` = L);
* user hypergraph of shared interests (every item a hyperedge of its users): H_u = mean_{l=1..L'} (G_U)^l E_u;
* item hypergraph of text similarity (top-k neighbours a hyperedge): H_i = mean_{l=1..L'} (G_I)^l E_i,
  with G = D_v^-1/2 H D_e^-1 H^T D_v^-1/2 and L' = ``hyper_layers``.

Final representations u = G_u + H_u, i = G_i + H_i, score u . i. Loss (per batch of (u, i+, i-)):
BPR -mean log sigma(u.i+ - u.i-) + ``pre_reg_weight`` mean ||E rows||^2
+ ``hcl_weight`` (InfoNCE(G_u, H_u) + InfoNCE(G_i, H_i)) over the batch's distinct users and positive items, at
temperature ``hcl_temperature`` (the synergistic contrastive learning of Eq. 6-7).

Run alone (``--model=HeLLM_Pretrain``) it trains stage 1 once per configuration and data (cached, ``stage1.py``),
writes the embeddings as atomic files and is evaluated as a general model (history masked) on the time-ordered
leave-one-out split that HeLLM uses.
"""
import os

import numpy as np
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_hyperllm.atomic import AtomicFileError, read_header
from recbole_hyperllm.errors import ConfigError, integer, positive
from recbole_hyperllm.graph import SparseGraph, spmm
from recbole_hyperllm.model.abstract import PluginModel
from recbole_hyperllm.model.hellm.hypergraph import (HypergraphOperator, info_nce, interest_incidence,
                                                     knn_incidence, lightgcn_operator)
from recbole_hyperllm.model.hyperllm.tag_data import load_node_vectors

HOW_TO_MAKE_FEATURES = ("On --dataset=ml-100k the run script makes ml-100k.itememb (MiniLM over titles, years and "
                        "genres) on first use; for another dataset give item_id:token + one float_seq column per item "
                        "(e.g. `python -m dataset_tools encode`), or list other files in item_feature_files.")


def feature_suffixes(config):
    """The suffixes of the atomic files whose vectors feed the item kNN (``item_feature_files``), checked."""
    suffixes = config["item_feature_files"]
    if isinstance(suffixes, str):
        suffixes = [suffixes]
    if not isinstance(suffixes, (list, tuple)) or not suffixes or not all(isinstance(s, str) and s for s in suffixes):
        raise ConfigError(f"config key 'item_feature_files' is {config['item_feature_files']!r}; give a list of atomic "
                          "file suffixes with item vectors, e.g. [itememb]")
    return list(suffixes)


def training_pairs(dataset):
    """(users, items) int64 arrays of the training interactions of ``dataset`` (general or sequential: RecBole's
    SequentialDataset.inter_matrix restores each user's first item, which is never a target)."""
    matrix = dataset.inter_matrix(form="coo")
    return matrix.row.astype(np.int64), matrix.col.astype(np.int64)


def load_item_features(config, dataset):
    """[(n_items, d_m) float32 array] of every file in ``item_feature_files``: its ``item_id`` column and its one
    float_seq column (RecBole's id order; the padding row 0 stays zero). Every item needs a row."""
    field = config["ITEM_ID_FIELD"]
    features = []
    for suffix in feature_suffixes(config):
        path = os.path.join(dataset.dataset_path, f"{dataset.dataset_name}.{suffix}")
        if not os.path.isfile(path):
            raise AtomicFileError(f"{path} not found: HeLLM's item hypergraph reads it (item_feature_files). "
                                  f"{HOW_TO_MAKE_FEATURES}")
        vectors = [name for name, kind in read_header(path) if kind == "float_seq"]
        if len(vectors) != 1:
            raise AtomicFileError(f"{path}, line 1: {len(vectors)} float_seq columns ({vectors}); an item feature file "
                                  f"holds {field}:token and exactly one float_seq column")
        table = load_node_vectors(dataset, suffix, field, vectors[0], dataset.num(field))
        features.append(table.numpy())
    return features


class HeLLM_Pretrain(PluginModel, GeneralRecommender):
    """HeLLM stage 1: LightGCN + user and item hypergraphs + synergistic InfoNCE (module docstring)."""

    input_type = InputType.PAIRWISE
    euclidean = True  # plain parameters trained by RecBole's learners (config_check: no manifold warning)

    @classmethod
    def uses_fixed_split(cls):
        return False  # the time-ordered leave-one-out split of HeLLM (properties/model/HeLLM_Pretrain.yaml)

    @classmethod
    def side_files(cls, config):
        return {suffix: [config["ITEM_ID_FIELD"]] for suffix in feature_suffixes(config)}

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.dim = integer(config, "pre_embedding_size", 1)
        self.layers = integer(config, "pre_layers", 1)
        self.hyper_layers = integer(config, "hyper_layers", 1)
        self.temperature = positive(config, "hcl_temperature")
        self.cl_weight = positive(config, "hcl_weight", allow_zero=True)
        self.reg_weight = positive(config, "pre_reg_weight", allow_zero=True)
        knn = integer(config, "item_knn_k", 1)
        self.user_embedding = nn.Embedding(self.n_users, self.dim)
        self.item_embedding = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        users, items = training_pairs(dataset)
        self.train_users, self.train_items = users, items
        self.ui_graph = SparseGraph.from_scipy(lightgcn_operator(users, items, self.n_users, self.n_items), self.device)
        # the two factors of each hypergraph operator are SparseGraph attributes, so model.to(device) moves them
        user_hyper = HypergraphOperator(interest_incidence(users, items, self.n_users, self.n_items), self.device)
        self.user_hyper_left, self.user_hyper_right = user_hyper.left, user_hyper.right
        self.item_features = load_item_features(config, dataset)
        item_hyper = HypergraphOperator(knn_incidence(self.item_features, knn), self.device)
        self.item_hyper_left, self.item_hyper_right = item_hyper.left, item_hyper.right
        # the final u, i once stage 1 ran (``before_training``); then scoring uses them
        self.register_buffer("final_user", torch.zeros(self.n_users, self.dim))
        self.register_buffer("final_item", torch.zeros(self.n_items, self.dim))
        self.frozen = False

    # ----- the three views -----------------------------------------------------------------------------------
    def graph_view(self):
        """(G_u, G_i): the mean of the LightGCN layers 0..L."""
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        layers = [x]
        for _ in range(self.layers):
            layers.append(spmm(self.ui_graph, layers[-1]))
        mean = torch.stack(layers).mean(0)
        return mean[: self.n_users], mean[self.n_users:]

    @staticmethod
    def _hyper(left, right, x, layers):
        """mean_{l=1..layers} G^l x with G = left @ right (``hypergraph.hypergraph_factors``)."""
        outputs = []
        for _ in range(layers):
            x = spmm(left, spmm(right, x))
            outputs.append(x)
        return torch.stack(outputs).mean(0)

    def hyper_view(self):
        """(H_u, H_i): the mean of the hypergraph convolution layers 1..L' on the ID embeddings."""
        return (self._hyper(self.user_hyper_left, self.user_hyper_right, self.user_embedding.weight, self.hyper_layers),
                self._hyper(self.item_hyper_left, self.item_hyper_right, self.item_embedding.weight, self.hyper_layers))

    def forward(self):
        """(u, i, (G_u, G_i), (H_u, H_i)): final representations u = G_u + H_u, i = G_i + H_i and the views."""
        graph, hyper = self.graph_view(), self.hyper_view()
        return graph[0] + hyper[0], graph[1] + hyper[1], graph, hyper

    def calculate_loss(self, interaction):
        users, positives = interaction[self.USER_ID], interaction[self.ITEM_ID]
        negatives = interaction[self.NEG_ITEM_ID]
        user_all, item_all, graph, hyper = self.forward()
        u, pos, neg = user_all[users], item_all[positives], item_all[negatives]
        bpr = -torch.nn.functional.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
        reg = (self.user_embedding(users).pow(2).sum() + self.item_embedding(positives).pow(2).sum()
               + self.item_embedding(negatives).pow(2).sum()) / len(users)
        distinct_users, distinct_items = torch.unique(users), torch.unique(positives)
        contrast = (info_nce(graph[0][distinct_users], hyper[0][distinct_users], self.temperature)
                    + info_nce(graph[1][distinct_items], hyper[1][distinct_items], self.temperature))
        self.last_loss_names = ("rank", "reg", "hcl")  # rank: BPR, the plugin's name for the ranking term
        return bpr, self.reg_weight * reg, self.cl_weight * contrast

    def embeddings(self):
        """(u, i) to score with: the stage-1 output once frozen, else computed now."""
        if self.frozen:
            return self.final_user, self.final_item
        user_all, item_all, _, _ = self.forward()
        return user_all, item_all

    def predict(self, interaction):
        user_all, item_all = self.embeddings()
        return (user_all[interaction[self.USER_ID]] * item_all[interaction[self.ITEM_ID]]).sum(1)

    def full_sort_predict(self, interaction):
        user_all, item_all = self.embeddings()
        return (user_all[interaction[self.USER_ID]] @ item_all.T).reshape(-1)

    def use_outputs(self, user, item):
        """Score with the given stage-1 output from now on (the ID embeddings are not trained further)."""
        self.final_user.copy_(user)
        self.final_item.copy_(item)
        self.frozen = True

    # ----- the run: stage 1 cached, then evaluated --------------------------------------------------------------
    def before_training(self, config, train_data, valid_data, logger, show_progress=False, resume=None):
        from recbole_hyperllm.model.hellm.stage1 import run_stage1

        user, item, info = run_stage1(config, train_data.dataset, valid_data, logger, model=self,
                                      show_progress=show_progress)
        self.use_outputs(user.to(self.final_user.device), item.to(self.final_item.device))
        return info

    def skips_training(self):
        return True  # stage 1 is trained (or read from the cache) by before_training
