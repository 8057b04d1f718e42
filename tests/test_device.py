"""Every tensor follows ``model.to(device)``: a training step, its backward pass and full-ranking scores on
torch's meta device, where any tensor left on the CPU meets a meta tensor and raises, as it would on CUDA.

Why the meta device and not fake CUDA tensors: on a CPU-only torch, ``FakeTensorMode`` cannot move a
tensor to "cuda" (``.to("cuda")`` raises without CUDA) and has no kernels for the sparse CSR products
the backbones propagate with. Meta tensors carry shapes and devices but no values, so two things are
stood in for here, each still checking devices: the CSR product (``torch.sparse.mm``; the stand-in
asserts that graph and features are on one device and returns a meta tensor of the product's shape),
and truth tests of meta tensors (the divergence checks; taken as passed).

Not covered, and why: HyperCL (its per-epoch views coalesce a sparse matrix, which has no meta kernel).
On a real GPU, ``benchmarks/cuda_check.py`` runs all 25 models and the CUDA-only test below six of them.
"""
import logging

import pytest
import torch

from recbole_hyperllm.graph import SparseGraph
from recbole_hyperllm.model import BACKBONES, FRAMEWORKS

from test_frameworks import build

ON_META = ("HGCF", "HRCF", "HICF", "HGCH")
MODELS_ON_META = sorted(ON_META + tuple(f"{f}_{b}" for f in FRAMEWORKS for b in ON_META))


@pytest.fixture
def meta_kernels(monkeypatch):
    """The two stand-ins of the module docstring."""
    product = torch.sparse.mm

    def sparse_mm(matrix, dense):
        assert matrix.device == dense.device, f"graph on {matrix.device}, features on {dense.device}"
        if dense.device.type == "meta":
            return dense.new_empty(matrix.shape[0], dense.shape[1])
        return product(matrix, dense)

    truth = torch.Tensor.__bool__
    monkeypatch.setattr(torch.sparse, "mm", sparse_mm)
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: True if self.is_meta else truth(self))


def on_meta(toy, model):
    """(model, batch) built on the CPU (its step before training included), then moved to meta."""
    config, net, train, valid = build(toy, model)
    net.before_training(config, train, valid, logging.getLogger("test"))
    net.begin_epoch(0)
    batch = next(iter(train))
    net.to("meta")
    return net, batch.to("meta")


def test_to_moves_the_sparse_graphs_and_the_device_attribute(toy):
    _, net, _, _ = build(toy, "HyperLLM_HGCF")
    graphs = {name: value for name, value in vars(net).items() if isinstance(value, SparseGraph)}
    graphs.update({f"backbone.{n}": v for n, v in vars(net.backbone).items() if isinstance(v, SparseGraph)})
    assert {"tag_graph", "backbone.ui_graph"} <= set(graphs)
    net.to("meta")
    assert net.tag_graph.device.type == "meta" and net.backbone.ui_graph.transpose.device.type == "meta"
    assert net.device.type == "meta" and net.backbone.device.type == "meta"


@pytest.mark.parametrize("model", MODELS_ON_META)
def test_one_step_and_full_ranking_stay_on_the_device(toy, model, meta_kernels):
    net, batch = on_meta(toy, model)
    losses = net.calculate_loss(batch)
    assert all(term.device.type == "meta" for term in losses)
    sum(losses).backward()
    for name, param in net.named_parameters():
        assert param.device.type == "meta", name
        assert param.grad is None or param.grad.device.type == "meta", name
    net.eval()
    scores = net.full_sort_predict(batch)
    assert scores.device.type == "meta" and scores.shape == (len(batch) * net.n_items,)


def test_a_graph_left_on_the_cpu_is_caught(toy, meta_kernels):
    cpu_graph = build(toy, "HGCF")[1].ui_graph
    net, batch = on_meta(toy, "HGCF")
    net.ui_graph = cpu_graph
    with pytest.raises(AssertionError, match="graph on cpu, features on meta"):
        net.calculate_loss(batch)


def test_a_tensor_made_on_the_cpu_during_the_step_is_caught(toy, meta_kernels, monkeypatch):
    net, batch = on_meta(toy, "HyperLLM_HGCF")
    inputs = net.node_inputs
    monkeypatch.setattr(net, "node_inputs", lambda: inputs() + torch.zeros(1, net.backbone.embedding_size))
    with pytest.raises(RuntimeError, match="expected device meta|is on cpu|device"):
        net.calculate_loss(batch)


def test_every_backbone_is_either_covered_or_named_as_not():
    assert set(BACKBONES) == set(ON_META) | {"HyperCL"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/cuda_check.py reports the same)")
@pytest.mark.parametrize("model", ["HGCF", "HGCH", "HyperCL", "HyperLLM_HGCH", "HyperLLM_HyperCL", "KAR_HICF"])
def test_on_cuda_every_parameter_gradient_and_score_stays_on_the_gpu(model):
    """The real device, for HyperCL (which the meta device cannot run) and a sample of the others
    (benchmarks/cuda_check.py: all 25)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from cuda_check import check

    row = check(model)
    assert row["ok"], row


def test_eq16_chunk_rows_follow_the_device_unless_configured(toy):
    _, net, _, _ = build(toy, "HyperLLM_HGCF")
    items = torch.empty(6086, 51)
    assert net.chunk_rows(items) == 128
    assert net.chunk_rows(items.to("meta")) == (1 << 26) // 6086 > 6086  # Beauty's Eq. 16 in one chunk
    net.cl_chunk_size = 64
    assert net.chunk_rows(items.to("meta")) == 64
