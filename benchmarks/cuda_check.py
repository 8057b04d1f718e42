"""Every plugin model on a real CUDA device: one training step (forward + backward) and one full-ranking
evaluation on the tiny synthetic dataset of the tests, with every parameter, gradient and score checked to
be on the GPU, and the host synchronisations of a step counted.

    python benchmarks/cuda_check.py [--out benchmarks/results/cuda_check.json]

Models: every backbone and every framework over every backbone (the CPU-only ``tests/test_device.py``
covers 15 of these 25 on the meta device; here all 25 run). Each model is built on the CPU (its step before
training included), moved with ``model.to("cuda")``, stepped once to warm up, then stepped again under
``torch.cuda.set_sync_debug_mode("warn")``: each warning there is one host synchronisation (a ``.item()``,
a truth test of a GPU tensor, a ``nonzero``...), recorded with the line of this project's code that made
it. Step time is the median of 5 steps (``torch.cuda.synchronize`` around each). Without CUDA it says so
and exits 0. Writes JSON and, beside it, the markdown table.
"""
import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def all_models():
    from recbole_hyperllm.model import BACKBONES, FRAMEWORKS

    return sorted(BACKBONES) + [f"{f}_{b}" for f in sorted(FRAMEWORKS) for b in sorted(BACKBONES)]


def build_on_cpu(model, folder):
    """(model, batch) of ``model`` on the tests' synthetic data, its step before training done on the CPU."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from conftest import FAST, make_synthetic
    from test_frameworks import CONTRACT  # the contract test's sizes (room for KAR's adaptor columns)
    from recbole_hyperllm.quick_start import create_config
    from recbole_hyperllm.utils import get_model

    make_synthetic(folder)
    settings = dict(FAST, **CONTRACT, data_path=folder, checkpoint_dir=str(Path(folder) / "saved"), use_gpu=False)
    config = create_config(model, "toy", config_dict=settings)
    init_seed(config["seed"], True)
    train, valid, _ = data_preparation(config, create_dataset(config))
    net = get_model(model)(config, train.dataset).to(config["device"])  # the CPU (use_gpu False), as RecBole's run
    net.before_training(config, train, valid, logging.getLogger("cuda_check"))
    net.begin_epoch(0)
    return net, next(iter(train))


def step(net, batch):
    net.train()
    net.zero_grad(set_to_none=True)
    losses = net.calculate_loss(batch)
    losses = losses if isinstance(losses, tuple) else (losses,)
    sum(losses).backward()
    return losses


def count_syncs(action, device="cuda"):
    """(result, [site, ...]) of ``action()`` with every host synchronisation recorded."""
    import torch

    sites = []
    if device != "cuda":  # a dry run of this script on the CPU: nothing to count
        return action(), sites

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            stack = [f for f in traceback.extract_stack() if str(ROOT) in f.filename and "cuda_check" not in f.filename]
            sites.append(f"{Path(stack[-1].filename).relative_to(ROOT)}:{stack[-1].lineno}" if stack
                         else f"{Path(filename).name}:{lineno}")

    with warnings.catch_warnings():  # restores warnings.showwarning on exit
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = action()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return result, sites


def check(model, device="cuda"):
    import torch

    with tempfile.TemporaryDirectory() as folder:
        net, batch = build_on_cpu(model, folder)
        net.to(device)
        batch = batch.to(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        step(net, batch)  # warm-up (kernels, caches)
        losses, step_sites = count_syncs(lambda: step(net, batch), device)
        finite = all(bool(torch.isfinite(term).all()) for term in losses)
        misplaced = [name for name, p in net.named_parameters()
                     if p.device.type != device or (p.grad is not None and p.grad.device.type != device)]
        times = []
        for _ in range(5):
            sync()
            begin = time.perf_counter()
            step(net, batch)
            sync()
            times.append(time.perf_counter() - begin)
        net.eval()
        with torch.no_grad():
            scores, rank_sites = count_syncs(lambda: net.full_sort_predict(batch), device)
        return {"ok": finite and not misplaced and scores.device.type == device and bool(torch.isfinite(scores).all()),
                "finite_terms": finite, "off_gpu_parameters": misplaced, "scores_device": str(scores.device),
                "step_ms": round(1000 * statistics.median(times), 2),
                "syncs_per_step": len(step_sites), "step_sync_sites": sorted(set(step_sites)),
                "syncs_full_ranking": len(rank_sites), "ranking_sync_sites": sorted(set(rank_sites))}


def markdown(result, before=None):
    """The table of ``result``; with ``before`` (an earlier run's JSON) its syncs per step beside."""
    stamp = result["run"]
    lines = ["# Every model on CUDA: one step, full ranking, host synchronisations", "",
             f"Command: `{stamp['command']}`; commit {stamp['commit']}; {stamp['date']}; {stamp['machine']}. "
             "Written by `benchmarks/cuda_check.py` (its docstring says what is checked and how).", "",
             "| model | on GPU, finite | step ms | host syncs per step | where | syncs in full ranking |"
             + (" syncs per step before |" if before else ""), "| --- | --- | --- | --- | --- | --- |" + (" --- |" if before else "")]
    earlier = (before or {}).get("models", {})
    for model, row in result["models"].items():
        if "error" in row:
            lines.append(f"| {model} | ERROR: {row['error'][:160]} | | | | |")
            continue
        then = earlier.get(model, {})
        then = (f" {then['syncs_per_step']} ({', '.join(then['step_sync_sites'])}) |" if "syncs_per_step" in then
                else f" error: {then['error'][:70]} |" if then else " |") if before else ""
        lines.append(f"| {model} | {'yes' if row['ok'] else 'NO'} | {row['step_ms']} | {row['syncs_per_step']} | "
                     f"{', '.join(row['step_sync_sites'])} | {row['syncs_full_ranking']} |" + then)
    if before:
        lines += ["", f"Before: {before['run']['command']}; commit {before['run']['commit']}; {before['run']['date']}; "
                      f"{before['run']['machine']}."] + ([before["note"]] if before.get("note") else [])
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cuda_check.json"))
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself (no syncs counted)")
    parser.add_argument("--markdown", action="store_true", help="rewrite the table of --out from its JSON (no runs)")
    parser.add_argument("--before", default=None, help="an earlier run's JSON: its syncs per step in a column")
    args = parser.parse_args(argv)
    import torch

    from reproduce_table3 import run_stamp

    if args.markdown:
        before = json.loads(Path(args.before).read_text()) if args.before else None
        Path(args.out).with_suffix(".md").write_text(markdown(json.loads(Path(args.out).read_text()), before))
        print(Path(args.out).with_suffix(".md"))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    out = Path(args.out)
    result = {"run": run_stamp("cuda_check.py", " ".join(argv if argv is not None else sys.argv[1:])), "models": {}}
    for model in args.models.split(",") if args.models else all_models():
        try:
            result["models"][model] = check(model, args.device)
        except Exception as error:  # reported in the table, never hidden
            result["models"][model] = {"error": f"{type(error).__name__}: {error}",
                                       "trace": traceback.format_exc()[-2000:]}
        print(model, json.dumps(result["models"][model])[:300], flush=True)
        out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    failed = [m for m, r in result["models"].items() if not r.get("ok")]
    print(f"{len(result['models']) - len(failed)} of {len(result['models'])} models ok" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
