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
