"""Multi-process training through RecBole's own mechanism (its keys ``nproc``, ``world_size``, ``ip``, ``port``,
``offset``; one process per rank spawned as ``recbole.quick_start.run`` does), on CUDA (NCCL) or CPU (gloo).

RecBole 1.2.1 hard-codes NCCL and one GPU per process in ``Config._init_device`` and wraps the model with
``DistributedDataParallel(device_ids=[rank])``, which refuses a CPU module; ``PluginConfig`` and the
trainers' ``TrustedCheckpoints`` handle both here, without touching RecBole.

What a loss means under DDP. RecBole gives every rank B/W of each batch and DDP averages the gradients over
the W ranks. A loss term is either
* a **share** of the full-batch loss (a sum over this rank's triples, this rank's slice of HyperLLM's tag
  triples or of Eq. 16's rows): the full loss is the sum of the ranks' shares, so each share is
  multiplied by W before DDP's average, or
* a **whole** term each rank estimates in full (a mean over its triples, a regulariser over all items):
  DDP's average of the ranks' estimates is the full term.
Models declare their share terms (``share_terms``); with them one DDP step equals one single-process step
on the full batch (``tests/test_distributed.py``).
"""
import os

import torch
import torch.distributed as dist
from recbole.config import Config

from recbole_hyperllm.errors import ONE_LINE_ERRORS, ConfigError

def is_distributed(config):
    return not config["single_spec"]


def rank_and_world(config):
    """(rank, world size) of this process; (0, 1) in one process."""
    if not is_distributed(config):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def part(length, rank, world):
    """The slice of ``range(length)`` that rank ``rank`` of ``world`` takes (contiguous, sizes differ by <= 1)."""
    base, extra = divmod(length, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def barrier(config):
    if is_distributed(config):
        dist.barrier()


def from_rank0(config, value):
    """Rank 0's ``value`` on every rank (e.g. the run's checkpoint name); ``value`` in one process."""
    if not is_distributed(config):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def is_writer(config):
    """Only rank 0 writes checkpoints, progress files, caches and results."""
    return not is_distributed(config) or config["local_rank"] == 0


def numpy_2_names():
    """The numpy 1 names RecBole 1.2.1's ``Config.compatibility_settings`` reads (``np.float_`` ...), given on
    numpy 2, which removed them (the CUDA images this plugin runs on ship numpy 2; pyproject pins numpy<2
    only for ray 2.6.3)."""
    import numpy as np

    for old, new in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
        if old not in np.__dict__:
            setattr(np, old, getattr(np, new))


class PluginConfig(Config):
    """RecBole's Config with three changes: a multi-process run uses NCCL on CUDA and gloo on the CPU (RecBole
    1.2.1 always NCCL, and asserts one gpu_id per process even without a GPU), ``use_gpu: False`` means the
    CPU (RecBole 1.2.1 ignores it in one process), and it builds on numpy 2."""

    def compatibility_settings(self):
        numpy_2_names()
        super().compatibility_settings()

    def _init_device(self):
        settings = self.final_config_dict
        if "local_rank" not in settings:
            super()._init_device()
            if settings.get("use_gpu") is False:  # RecBole 1.2.1 picks CUDA whenever one is visible
                settings["device"] = torch.device("cpu")
            return None
        gpu_id = ",".join(map(str, settings["gpu_id"])) if isinstance(settings["gpu_id"], tuple) else str(settings["gpu_id"])
        settings["gpu_id"] = gpu_id
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
        use_cuda = bool(gpu_id) and settings.get("use_gpu", True) is not False and torch.cuda.is_available()
        if use_cuda and len(gpu_id.split(",")) < settings["nproc"]:
            raise ConfigError(f"config key 'gpu_id' is {gpu_id!r}: nproc={settings['nproc']} needs one GPU per "
                              f"process; give {settings['nproc']} ids or lower nproc")
        rank = settings["local_rank"] + settings["offset"]
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank,
                                    world_size=settings["world_size"],
                                    init_method=f"tcp://{settings['ip']}:{settings['port']}")
        settings["device"] = torch.device("cuda", settings["local_rank"]) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(settings["local_rank"])
        settings["single_spec"] = False
        if settings["local_rank"] != 0:
            settings["state"], settings["show_progress"], settings["verbose"] = "error", False, False


def wrap_model(config, model):
    """RecBole's DistributedDataParallel wrapper, with device_ids only for a CUDA module."""
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = config["device"].type == "cuda"
    return DistributedDataParallel(model, device_ids=[config["local_rank"]] if on_cuda else None)


def scale_shares(losses, names, share_terms, world):
    """Each share term times ``world`` (DDP then averages the ranks' sums back to the full loss's gradient)."""
    if world == 1 or not share_terms:
        return losses
    single = not isinstance(losses, tuple)
    values = (losses,) if single else losses
    names = tuple(names or ())
    scaled = tuple(v * world if i < len(names) and names[i] in share_terms else v for i, v in enumerate(values))
    return scaled[0] if single else scaled


def distributed_settings(config_dict, nproc, world_size=-1, ip="localhost", port="5678", offset=0):
    """The config entries RecBole's ``run`` gives every rank (``world_size`` -1: one machine, ``nproc`` ranks)."""
    world = world_size if world_size and world_size > 0 else nproc
    return dict(config_dict or {}, nproc=nproc, world_size=world, ip=ip, port=str(port), offset=offset)


def _run_rank(local_rank, args, settings, results):
    """One rank: ``run_recbole_hyperllm``; rank 0 puts the result on ``results``. An error the run script
    reports in one line is printed by the rank that met it, which exits 2 (spawn then stops the others)."""
    import sys

    from recbole_hyperllm.quick_start import run_recbole_hyperllm

    model, dataset, config_file_list = args
    try:
        result = run_recbole_hyperllm(model, dataset, config_file_list, dict(settings, local_rank=local_rank))
        if local_rank == 0:
            results.put(result)
    except ONE_LINE_ERRORS as error:
        print(f"error (rank {local_rank}): {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_distributed(model, dataset, config_file_list, config_dict, nproc, **network):
    """``nproc`` processes of ``run_recbole_hyperllm`` (torch.multiprocessing.spawn, as RecBole's ``run``);
    returns rank 0's result. A rank that fails ends the run: spawn stops the others and raises
    ``ProcessExitedException`` (exit code 2 after a one-line error) or ``ProcessRaisedException``."""
    import torch.multiprocessing as mp

    settings = distributed_settings(config_dict, nproc, **network)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.spawn(_run_rank, args=((model, dataset, config_file_list), settings, results), nprocs=nproc, join=True)
    return results.get()
