import numpy as np

from recbole_hyperllm.graph import bipartite_adjacency, row_normalise_with_self_loops, tag_graph_adjacency


def test_bipartite_graph_is_symmetric_with_normalised_rows_and_self_loops():
    adj = bipartite_adjacency([0, 0, 1, 2, 2], [0, 1, 1, 0, 0], 3, 2)  # one duplicate edge
    dense = adj.toarray()
    assert (dense == dense.T).all() and dense.sum() == 8
    norm = row_normalise_with_self_loops(adj).toarray()
    assert np.allclose(norm.sum(1), 1.0)
    assert (np.diag(norm) > 0).all()
    assert np.isclose(norm[0, 0], 1 / 3) and np.isclose(norm[0, 3], 1 / 3)  # user 0: self + 2 items


def test_tag_graph_puts_tags_first_and_drops_self_edges():
    adj = tag_graph_adjacency(np.array([0, 1]), np.array([1, 1]), np.array([2]), np.array([0]), 3, 2).toarray()
    assert adj.shape == (5, 5)
    assert adj[0, 1] == adj[1, 0] == 1 and adj[1, 1] == 0
    assert adj[2, 3] == adj[3, 2] == 1  # tag 2 - item 0 (node 3)


def test_sparse_graph_product_and_gradient_equal_torch_sparse_mm_exactly():
    import scipy.sparse as sp
    import torch

    from recbole_hyperllm.graph import SparseGraph, spmm, to_torch_sparse

    rng = np.random.default_rng(0)
    n = 60
    adj = sp.coo_matrix((np.ones(400), (rng.integers(0, n, 400), rng.integers(0, n, 400))), shape=(n, n))
    matrix = row_normalise_with_self_loops(adj)  # not symmetric: the backward needs the transpose
    graph, plain = SparseGraph.from_scipy(matrix), to_torch_sparse(matrix)
    x, weights = torch.randn(n, 7), torch.randn(n, 7)
    grads = []
    for product in (lambda d: spmm(graph, d), lambda d: torch.sparse.mm(plain, d)):
        leaf = x.clone().requires_grad_(True)
        out = leaf
        for _ in range(3):
            out = product(out)
        (out * weights).sum().backward()
        grads.append((out.detach(), leaf.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    dense = torch.from_numpy(matrix.toarray())
    torch.testing.assert_close(grads[0][1], (dense.t() @ (dense.t() @ (dense.t() @ weights))), rtol=1e-5, atol=1e-5)
