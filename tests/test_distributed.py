"""Multi-process training (issue 17): on CPU with gloo, 2 processes.

One DDP step (each rank: its half of the batch, its part of HyperLLM's tag triples and of Eq. 16's rows,
share terms scaled by the world size, gradients averaged by DDP) gives the parameters of one
single-process step on the whole batch; a 2-process run of the run script ends with test metrics and
one set of files."""
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from geoopt.optim import RiemannianSGD

from conftest import FAST, ROOT, make_synthetic
from recbole_hyperllm.distributed import part, scale_shares

WORLD = 2
# Exact cases: summed terms split across ranks (HGCF, KAR, HyperLLM) and a mean ranking loss (HGCH with
# hgch_loss_mean: its mean over non-zero hinge terms; at initialisation all are non-zero) that every rank
# estimates whole. In-batch contrastive terms (RLMRec-Con, HyperCL) see only
# their rank's half of the batch as negatives, as under any data-parallel training, so they are not exact.
MODELS = {"HGCF": {}, "KAR_HGCF": {"embedding_size": 32}, "HyperLLM_HGCF": {"variant": "Structural"},
          "HGCH": {"hgch_loss_mean": True}}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def model_and_batch(root, model_name, extra):
    """The model (seeded, as every rank builds it) and the first training batch of the toy dataset."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hyperllm.quick_start import create_config
    from recbole_hyperllm.utils import get_model

    config = create_config(model_name, "toy", config_dict=dict(
        FAST, data_path=root, checkpoint_dir=os.path.join(root, "saved"), **extra))
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    batch = next(iter(train))
    init_seed(config["seed"], True)
    return get_model(model_name)(config, train.dataset), batch


def one_step(net, batch, world=1, ddp=None):
    """RecBole's training step (``Trainer._train_epoch``, with its DDP hook and zero sync loss) plus the
    plugin's share scaling; RiemannianSGD as the HGCF family trains."""
    optimizer = RiemannianSGD([p for p in net.parameters() if p.requires_grad], lr=0.05, momentum=0.0)
    optimizer.zero_grad()
    sync = 0
    if ddp is not None:
        forward, net.forward = net.forward, (lambda x: x)
        ddp(torch.zeros(1, dtype=torch.long))
        net.forward = forward
        sync = sum(p.sum() * 0 for p in net.parameters())
    losses = scale_shares(net.calculate_loss(batch), net.last_loss_names, net.share_terms(), world)
    (sum(losses) + sync).backward()
    optimizer.step()
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def _rank(rank, root, model_name, extra, port, out):
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, init_method=f"tcp://127.0.0.1:{port}")
    try:
        net, batch = model_and_batch(root, model_name, extra)
        net.set_shard(rank, WORLD)
        rows = torch.arange(len(batch))[rank::WORLD]  # RecBole's DistributedSampler strides the same way
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        torch.save(one_step(net, batch[rows], WORLD, ddp), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_one_ddp_step_equals_one_step_on_the_whole_batch(tmp_path, model_name):
    root = str(tmp_path)
    make_synthetic(root)
    extra = MODELS[model_name]
    net, batch = model_and_batch(root, model_name, extra)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    expected = one_step(net, batch)
    assert [n for n in expected if not torch.equal(expected[n], before[n])]  # the step moved something
    mp.spawn(_rank, args=(root, model_name, extra, free_port(), root), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name, value in expected.items():
        for got in ranks:
            torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=f"{model_name}: {name}")


def test_a_split_of_the_rows_covers_every_row_once():
    for length in (0, 1, 7, 10):
        for world in (1, 2, 3):
            covered = [i for r in range(world) for i in range(length)[part(length, r, world)]]
            assert covered == list(range(length))


def test_two_processes_train_hyperllm_to_test_metrics_with_one_set_of_files(tmp_path):
    make_synthetic(str(tmp_path))
    cmd = [sys.executable, os.path.join(ROOT, "run_recbole_hyperllm.py"), "--model=HyperLLM_HGCF", "--dataset=toy",
           f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=2", "--meta_epochs=2",
           "--embedding_size=8", "--num_experts=3", "--train_batch_size=64", "--show_progress=False",
           "--nproc=2", f"--port={free_port()}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (out.stdout + out.stderr).count("test result") == 1  # rank 0 reports; the others log errors only
    files = sorted(os.listdir(tmp_path / "saved"))
    assert len([f for f in files if f.endswith("-last.pth") and not f.endswith("-phase1-last.pth")]) == 1
    assert len([f for f in files if f.endswith("-phase1-last.pth")]) == 1  # phase 1's progress file, rank 0's
    assert len([f for f in files if f.endswith("-phase1.pth")]) == 1 and os.listdir(tmp_path / "saved" / "phase1")
    assert len([f for f in files if f.endswith(".pth")]) == 4 and not [f for f in files if "partial" in f]


def test_a_rank_that_fails_ends_the_run_with_its_error(tmp_path):
    make_synthetic(str(tmp_path))
    cmd = [sys.executable, os.path.join(ROOT, "run_recbole_hyperllm.py"), "--model=HyperLLM_HGCF", "--dataset=toy",
           f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}", "--variant=Structural",
           "--tag_margin=1e38", "--embedding_size=8", "--show_progress=False", "--nproc=2", f"--port={free_port()}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert out.returncode == 2 and "): loss term 'tag' is inf at epoch 0, batch 0" in out.stderr, out.stderr[-2000:]
