"""Graphs propagated by the hyperbolic backbones, built with scipy.sparse.

HGCF (github layer6ai-labs/HGCF, ``utils/data_utils.py``) and the HyperLLM
release (``main.py``) propagate over a symmetric bipartite graph with self loops,
row-normalised: A_hat = D^-1 (A + I). The tag graph of HyperLLM (Sec. 4.3,
I^tag) stacks tags first and items after, with tag-tag and tag-item edges in
both directions.
"""
import numpy as np
import scipy.sparse as sp
import warnings

import torch

__all__ = ["bipartite_adjacency", "tag_graph_adjacency", "row_normalise_with_self_loops", "to_torch_sparse",
           "SparseGraph", "spmm"]


def bipartite_adjacency(left, right, n_left, n_right):
    """Symmetric 0/1 adjacency over n_left + n_right nodes from edges left[k] - right[k]."""
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64) + n_left
    rows = np.concatenate([left, right])
    cols = np.concatenate([right, left])
    n = n_left + n_right
    adj = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # duplicates collapse to one edge
    return adj


def tag_graph_adjacency(parent, child, tag_of_link, item_of_link, n_tags, n_items):
    """Symmetric adjacency of I^tag: tag-tag edges among the first n_tags nodes, tag-item edges to the items after them."""
    n = n_tags + n_items
    rows = np.concatenate([parent, child, tag_of_link, np.asarray(item_of_link) + n_tags]).astype(np.int64)
    cols = np.concatenate([child, parent, np.asarray(item_of_link) + n_tags, tag_of_link]).astype(np.int64)
    adj = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.data[:] = 1.0
    return adj


def row_normalise_with_self_loops(adj):
    """D^-1 (A + I): every row sums to one."""
    adj = sp.csr_matrix(adj, dtype=np.float32) + sp.eye(adj.shape[0], dtype=np.float32, format="csr")
    degree = np.asarray(adj.sum(axis=1)).ravel()
    return sp.diags(1.0 / degree).dot(adj).tocsr().astype(np.float32)


def to_torch_sparse(matrix, device="cpu"):
    """scipy CSR -> torch sparse CSR tensor (fast spmm on CPU)."""
    matrix = sp.csr_matrix(matrix)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        tensor = torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            check_invariants=False,
        )
    return tensor.to(device)


class SparseGraph:
    """A sparse CSR matrix A with its transpose A^T kept beside it, for ``spmm``.

    The gradient of A X with respect to X is A^T G; torch rebuilds A^T from A (a sort and an
    index_select) in every backward pass, which was about 75% of an HGCF step on ml-100k. Here
    A^T is built once. The products are the same CSR kernel on the same matrices, so the numbers
    equal torch.sparse.mm's exactly (``tests/test_graph.py``)."""

    def __init__(self, matrix, transpose):
        self.matrix, self.transpose = matrix, transpose

    @classmethod
    def from_scipy(cls, matrix, device="cpu"):
        matrix = sp.csr_matrix(matrix)
        return cls(to_torch_sparse(matrix, device), to_torch_sparse(matrix.T.tocsr(), device))

    @property
    def shape(self):
        return self.matrix.shape

    def to(self, device):
        return SparseGraph(self.matrix.to(device), self.transpose.to(device))

    def apply(self, fn):
        """The graph with ``fn`` applied to both matrices (what ``nn.Module._apply`` does to a buffer)."""
        return SparseGraph(fn(self.matrix), fn(self.transpose))

    @property
    def device(self):
        return self.matrix.device

    def to_dense(self):
        return self.matrix.to_dense()


class _GraphProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dense, graph):
        ctx.graph = graph
        return torch.sparse.mm(graph.matrix, dense)

    @staticmethod
    def backward(ctx, grad):
        return torch.sparse.mm(ctx.graph.transpose, grad), None


def spmm(graph, dense):
    """A @ dense for a ``SparseGraph`` (or any torch sparse matrix), differentiable in ``dense``."""
    if isinstance(graph, SparseGraph):
        return _GraphProduct.apply(dense, graph)
    return torch.sparse.mm(graph, dense)
