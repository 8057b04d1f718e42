"""The graphs and the contrastive loss of HeLLM's stage 1 (Xu et al., "Multi-Modal Hypergraph Enhanced LLM
Learning for Recommendation", arXiv 2504.10541, Sec. 3.2; its pre-training code is Xu107/MMHCL).

* ``lightgcn_operator``: the user-item graph of LightGCN (He et al., SIGIR 2020),
  A_hat = D^-1/2 A D^-1/2 over the symmetric bipartite adjacency A (no self loops).
* ``interest_incidence``: the user hypergraph of shared interests: every item is a hyperedge joining the users
  who interacted with it in the training split, H_u = R (users x items).
* ``knn_incidence``: the item hypergraph of feature similarity: item j's hyperedge joins the k items most similar to
  j by the cosine of their feature vectors (j included), similarity averaged over the feature sources.
* ``HypergraphOperator``: X -> D_v^-1/2 H W D_e^-1 H^T D_v^-1/2 X with W = I (Feng et al., HGNN, AAAI 2019; the
  hypergraph convolution of HeLLM Eq. 2-3), kept as two sparse factors so no dense vertex x vertex matrix is made.
* ``info_nce``: the synergistic contrastive loss between two views of the same nodes (HeLLM Eq. 6-7).
"""
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recbole_hyperllm.graph import SparseGraph, bipartite_adjacency, spmm

__all__ = ["lightgcn_operator", "interest_incidence", "knn_incidence", "hypergraph_factors", "HypergraphOperator",
           "info_nce"]


def _inverse(values, power=1.0):
    """values^-power where values > 0, else 0 (an isolated vertex or an empty hyperedge contributes nothing)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    result = np.zeros_like(values)
    positive = values > 0
    result[positive] = values[positive] ** -power
    return result


def lightgcn_operator(users, items, n_users, n_items):
    """D^-1/2 A D^-1/2 (scipy CSR, (n_users + n_items)^2) of the bipartite graph of the pairs (users[k], items[k]),
    users first: LightGCN's propagation matrix (He et al. 2020, Eq. 7)."""
    adjacency = bipartite_adjacency(users, items, n_users, n_items)
    scale = sp.diags(_inverse(adjacency.sum(axis=1), 0.5))
    return (scale @ adjacency @ scale).tocsr().astype(np.float32)


def interest_incidence(users, items, n_users, n_items):
    """H_u (n_users x n_items, 0/1): vertex = user, hyperedge = item; user u is in item i's hyperedge when (u, i) is
    a training interaction (users sharing an interest in i; HeLLM Sec. 3.2.1, the MMHCL user hypergraph)."""
    matrix = sp.coo_matrix((np.ones(len(users), dtype=np.float32), (np.asarray(users), np.asarray(items))),
                           shape=(n_users, n_items)).tocsr()
    matrix.data[:] = 1.0
    return matrix


def knn_incidence(features, k, skip_first=1, block=1024):
    """H_i (n x n, 0/1): hyperedge j joins item j and the items most similar to it, k in all.

    Similarity: the mean over the feature sources of the cosine, s(a, b) = 1/M sum_m <f_a^m, f_b^m> / (|f_a^m| |f_b^m|)
    (HeLLM Sec. 3.2.1 builds the item hypergraph from the top-k of the multi-modal similarity; text only here).
    ``features``: list of (n, d_m) arrays. The first ``skip_first`` rows (RecBole's padding item 0) are neither
    vertices nor hyperedges. Item j is always in its own hyperedge; ties keep the lower index.
    """
    normalised = []
    for matrix in features:
        matrix = np.asarray(matrix, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        normalised.append(np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0))
    n = normalised[0].shape[0]
    real = n - skip_first
    k = min(int(k), real)
    rows, cols = [], []
    for start in range(skip_first, n, block):
        stop = min(start + block, n)
        similarity = sum(f[start:stop] @ f[skip_first:].T for f in normalised) / len(normalised)
        similarity[np.arange(stop - start), np.arange(start, stop) - skip_first] = np.inf  # j is in its own edge
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :k] + skip_first
        for offset, members in enumerate(order):
            rows.extend(members.tolist())
            cols.extend([start + offset] * k)
    matrix = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    matrix.data[:] = 1.0
    return matrix


def hypergraph_factors(incidence):
    """(L, R) with L R = D_v^-1/2 H D_e^-1 H^T D_v^-1/2 (W = I): L = D_v^-1/2 H, R = D_e^-1 H^T D_v^-1/2, where
    D_v = diag(H 1) (hyperedges per vertex) and D_e = diag(H^T 1) (vertices per hyperedge)."""
    incidence = sp.csr_matrix(incidence, dtype=np.float32)
    vertex = sp.diags(_inverse(incidence.sum(axis=1), 0.5))
    edge = sp.diags(_inverse(incidence.sum(axis=0), 1.0))
    left = (vertex @ incidence).tocsr().astype(np.float32)
    right = (edge @ incidence.T @ vertex).tocsr().astype(np.float32)
    return left, right


class HypergraphOperator:
    """X -> D_v^-1/2 H D_e^-1 H^T D_v^-1/2 X as two sparse products (differentiable in X)."""

    def __init__(self, incidence, device="cpu"):
        left, right = hypergraph_factors(incidence)
        self.left, self.right = SparseGraph.from_scipy(left, device), SparseGraph.from_scipy(right, device)

    def __call__(self, x):
        return spmm(self.left, spmm(self.right, x))


def info_nce(anchor, positive, temperature):
    """Mean over rows k of -log( exp(c(a_k, p_k)/tau) / sum_j exp(c(a_k, p_j)/tau) ), c the cosine: the same node
    in the other view is the positive, the other nodes of the batch in that view are the negatives (HeLLM Eq. 6-7,
    the user-item graph view against the hypergraph view)."""
    logits = F.normalize(anchor, dim=1) @ F.normalize(positive, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))
