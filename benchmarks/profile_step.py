"""Where one epoch of a plugin model on Beauty spends its time, per part.

    python benchmarks/profile_step.py --model HyperLLM_HyperCL [--steps 10] [--workdir DIR]
        [--data ../shared/data/hyperllm-official] [--out results/profile_HyperLLM_HyperCL.json]
        [--set KEY=VALUE ...]   (e.g. --set cl_compile=False: Eq. 16's eager chain)

With the authors' Beauty hyper-parameters (``properties/beauty``), runs ``--steps``
training steps exactly as the trainer does (``calculate_loss``, backward, optimiser
step) and times, per step, the model's parts by wrapping them:

* ``propagate``: every graph propagation of the backbone (user-item graph, and the
  tag graph for HyperLLM), with the exp/log maps around it;
* ``pair_loss``: the margin ranking losses (user-item, and the tag graph's);
* ``extra_losses``: the backbone's own extra terms (HyperCL's second view + InfoNCE,
  HRCF's regulariser);
* ``negative_candidates``: HICF's informative-negative candidates;
* ``tag sampling`` and ``Eq. 16`` (HyperLLM);
* ``rest of forward`` = calculate_loss minus the parts above, ``backward``, ``optimizer step``.

A part called from inside another timed part counts for the outer one only. Per epoch
it also times one pass of RecBole's training loader alone (``sampling``: negative
sampling + batching) and one validation pass (``evaluation``). Figures are medians
over the steps, scaled to the epoch's number of batches. Skips cleanly when the
release is absent.
"""
import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def now():
    """perf_counter after the GPU's queued work is done (CUDA kernels run asynchronously: a part's time is the
    time its kernels take, not the time to launch them). On the CPU this is perf_counter."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


class PartTimer:
    """Wall-clock seconds per named part and step; nested timed calls count for the outermost one, and a part
    called several times in one step (HyperLLM propagates and ranks twice) counts the sum of its calls."""

    def __init__(self):
        self.times = {}   # part -> {step: seconds}
        self._depth = 0
        self.step = 0

    def begin_step(self):
        self.step += 1

    def record(self, name, seconds):
        per_step = self.times.setdefault(name, {})
        per_step[self.step] = per_step.get(self.step, 0.0) + seconds

    def wrap(self, owner, attribute, name=None):
        """Replace ``owner.attribute`` (a callable) by a timed version, if it exists."""
        function = getattr(owner, attribute, None)
        if function is None:
            return

        @functools.wraps(function)
        def timed(*args, **kwargs):
            self._depth += 1
            start = now()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.record(name or attribute, now() - start)

        setattr(owner, attribute, timed)

    def call(self, name, fn):
        start = now()
        value = fn()
        self.record(name, now() - start)
        return value

    def step_parts(self, steps):
        """{part: seconds per step}: the median over the steps 1..steps of each part's per-step total (0 in a
        step where the part did not run)."""
        return {name: statistics.median(per_step.get(step, 0.0) for step in range(1, steps + 1))
                for name, per_step in self.times.items()}


def instrument(net, timer):
    """Wrap the parts of a backbone (and of HyperLLM around it) that the docstring lists."""
    import recbole_hyperllm.model.hyperllm.hyperllm as hyperllm_module

    backbone = getattr(net, "backbone", net)
    for attribute in ("propagate", "pair_loss", "extra_losses", "negative_candidates"):
        timer.wrap(backbone, attribute)
    if hasattr(net, "tag_sampler"):
        timer.wrap(net.tag_sampler, "next_batch", "tag sampling")
    for attribute in ("hyperbolic_infonce", "hyperbolic_infonce_in_batch"):
        timer.wrap(hyperllm_module, attribute, "Eq. 16")


def profile(model, workdir, data, steps, overrides=None):
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from reproduce_table3 import DATASET, config_files, convert
    from recbole_hyperllm.quick_start import create_config
    from recbole_hyperllm.trainer import HyperbolicTrainer
    from recbole_hyperllm.utils import get_model

    config = create_config(model, DATASET, config_files(model), {
        "data_path": convert(data, workdir), "show_progress": False, "state": "WARNING",
        "checkpoint_dir": str(Path(workdir) / "saved"), **(overrides or {})})
    init_seed(config["seed"], True)
    train, valid, _ = data_preparation(config, create_dataset(config))
    net = get_model(model)(config, train.dataset).to(config["device"])
    trainer = HyperbolicTrainer(config, net)
    net.train()
    timer = PartTimer()
    instrument(net, timer)
    start = time.perf_counter()
    batches = sum(1 for _ in train)
    once_per_epoch = {"sampling": time.perf_counter() - start}
    measured = 0
    for interaction in train:
        if measured == steps:
            break
        timer.begin_step()
        losses = timer.call("forward", lambda: net.calculate_loss(interaction))
        loss = sum(losses) if isinstance(losses, tuple) else losses
        timer.call("backward", loss.backward)
        timer.call("optimizer step", lambda: (trainer.optimizer.step(), trainer.optimizer.zero_grad()))
        measured += 1
    net.eval()
    start = now()
    with torch.no_grad():
        trainer._valid_epoch(valid, show_progress=False)
    once_per_epoch["evaluation"] = now() - start
    per_step = timer.step_parts(measured)
    per_step["rest of forward"] = per_step.pop("forward") - sum(
        v for k, v in per_step.items() if k not in ("forward", "backward", "optimizer step"))
    per_epoch = {**{k: v * batches for k, v in per_step.items()}, **once_per_epoch}
    return {"model": model, "steps": measured, "batches_per_epoch": batches,
            "seconds_per_epoch": per_epoch, "total": sum(per_epoch.values())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hyperllm-official"))
    parser.add_argument("--model", default="HyperLLM_HGCF")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra RecBole config, e.g. --set cl_compile=False")
    args = parser.parse_args(argv)
    from reproduce_table3 import parse_overrides
    overrides = parse_overrides(args.set)
    if not (Path(args.data) / "beauty" / "train_matrix.npz").is_file():
        print(f"skipped: the authors' release is not at {args.data}")
        return 0
    result = profile(args.model, args.workdir or tempfile.mkdtemp(prefix="hyperllm-beauty-"), args.data, args.steps,
                     overrides)
    result["overrides"] = overrides
    from reproduce_table3 import run_stamp
    result["run"] = run_stamp("profile_step.py", " ".join(sys.argv[1:] if argv is None else argv))
    print(f"{args.model}: {result['batches_per_epoch']} batches per epoch, median of {result['steps']} steps")
    for name, seconds in sorted(result["seconds_per_epoch"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:22s} {seconds:7.2f} s/epoch  {100 * seconds / result['total']:5.1f} %")
    print(f"  {'total':22s} {result['total']:7.2f} s/epoch")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
