"""Where one HyperLLM_HGCF training step on Beauty spends its time (median over steps, per part).

    python benchmarks/profile_step.py --data ../shared/data/hyperllm-official [--steps 10]

Times each part of ``HyperLLM.calculate_loss`` plus the backward pass and the RSGD
step, separately, with the authors' Beauty hyper-parameters. Skips cleanly when
the release is absent.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hyperllm-official"))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    if not (Path(args.data) / "beauty" / "train_matrix.npz").is_file():
        print(f"skipped: the authors' release is not at {args.data}")
        return 0
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed
    from reproduce_table3 import DATASET, config_files, convert
    from recbole_hyperllm.losses import hyperbolic_infonce
    from recbole_hyperllm.quick_start import create_config
    from recbole_hyperllm.trainer import HyperbolicTrainer
    from recbole_hyperllm.utils import get_model

    workdir = args.workdir or tempfile.mkdtemp(prefix="hyperllm-beauty-")
    config = create_config("HyperLLM_HGCF", DATASET, config_files("HyperLLM_HGCF"), {
        "data_path": convert(args.data, workdir), "show_progress": False, "state": "WARNING",
        "checkpoint_dir": str(Path(workdir) / "saved")})
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    net = get_model("HyperLLM_HGCF")(config, train.dataset)
    optimizer = HyperbolicTrainer(config, net).optimizer
    times = {}

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        times.setdefault(name, []).append(time.perf_counter() - start)
        return value

    for _, interaction in zip(range(args.steps), train):
        item_t, ui = timed("user-item propagation", net._propagate_user_item)
        rank = timed("rank loss", lambda: net.backbone.interaction_loss(ui, interaction, net.margin)["rank"])
        tag = timed("tag-graph propagation", lambda: net.backbone.propagate(
            torch.cat([net.manifold.logmap0(net.tag_embedding), item_t]), net.tag_graph))
        anchors, positives, negatives = timed("tag sampling", lambda: net.tag_sampler.next_batch(net.device))
        tag_loss = timed("tag loss", lambda: net.backbone.pair_loss(tag, anchors, positives, negatives, net.tag_margin))
        cl = timed("Eq. 16 forward + gradient", lambda: net.cl_weight * hyperbolic_infonce(
            ui[net.n_users + 1:], tag[net.n_tags + 1:], net.cl_temperature, net.cl_chunk_size))
        timed("rest of backward", lambda: (rank + tag_loss + cl).backward())
        timed("RSGD step", lambda: (optimizer.step(), optimizer.zero_grad()))
    total = sum(statistics.median(v) for v in times.values())
    for name, values in sorted(times.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"{name:28s} {statistics.median(values) * 1000:7.1f} ms")
    print(f"{'sum per step':28s} {total * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
