"""How the cost of a training epoch grows with the data: HGCF, HyperLLM with the exact Eq. 16 and with
``cl_scope: batch``, on synthetic power-law datasets of 1x, 2x, 4x and 8x Beauty's users and items.

    python benchmarks/cost_growth.py [--scales 1,2,4,8] [--steps 3] [--workdir /tmp/cost-growth] \\
        [--out benchmarks/results/cost_growth.json]

Beauty as released by the HyperLLM authors (``../shared/data/hyperllm-official``): 10,553 users, 6,086
items, 94,148 interactions, 6,418 tags, 33,478 tag edges, 51,396 item-tag links. A dataset at scale s has
s times each: user activity and item popularity drawn from power laws (Zipf-like, exponent 1; every user
at least 5 interactions), tags on 3 levels (10% / 30% / 60%), each non-root tag with a few parents one
level up, links by tag popularity. The graph sizes are Beauty's; the values mean nothing.

Each (scale, model) runs in its own process (its own peak memory) with Beauty's hyper-parameters
(``properties/beauty``; HyperLLM as its phase-2 step, ``variant: Structural``: tag loss + Eq. 16; phase 1 and
the semantic start change no per-step cost). It times ``--steps`` training steps after one warm-up step
(``calculate_loss``, backward, RiemannianSGD step, as the trainer runs them), and reports the median step
times the number of steps of an epoch (RecBole's 8:1:1 split, ``train_batch_size`` 4096): seconds per
epoch **estimated from timed steps**, training only (no negative sampling of the loader, no validation).
The JSON (one entry per ``<model>@<scale>``, rewritten after every run so a stopped benchmark resumes),
a Markdown table and a log-log plot (matplotlib, if installed) are written beside ``--out``.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BEAUTY = {"users": 10553, "items": 6086, "interactions": 94148, "tags": 6418, "edges": 33478, "links": 51396}
MODELS = {
    "HGCF": ("HGCF", {}),
    "HyperLLM exact Eq. 16": ("HyperLLM_HGCF", {"variant": "Structural", "cl_scope": "all"}),
    "HyperLLM cl_scope batch": ("HyperLLM_HGCF", {"variant": "Structural", "cl_scope": "batch"}),
}
NAME = "synthetic"


def power_law_draws(rng, n_values, size, exponent=1.0):
    """``size`` draws of 0..n_values-1 with P(k) proportional to (k + 1)^-exponent, shuffled labels."""
    weights = (np.arange(n_values) + 1.0) ** -exponent
    labels = rng.permutation(n_values)
    return labels[rng.choice(n_values, size=size, p=weights / weights.sum())]


def write_rows(path, header, rows):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(header) + "\n")
        handle.writelines("\t".join(map(str, row)) + "\n" for row in rows)


def make_dataset(folder, scale, seed=0):
    """Atomic files of a synthetic dataset ``scale`` times Beauty's sizes; returns its sizes."""
    rng = np.random.default_rng(seed + scale)
    n = {k: v * scale for k, v in BEAUTY.items()}
    os.makedirs(folder, exist_ok=True)
    # users: at least 5 interactions, the rest by a power law; items by popularity
    pairs = np.empty((0, 2), dtype=np.int64)
    users = np.repeat(np.arange(n["users"]), 5)
    while pairs.shape[0] < n["interactions"]:  # repeated (user, item) draws are merged: draw until enough
        users = np.concatenate([users, power_law_draws(rng, n["users"], n["interactions"] - pairs.shape[0])])
        items = power_law_draws(rng, n["items"], users.size)
        pairs = np.unique(np.concatenate([pairs, np.stack([users, items], axis=1)]), axis=0)
        users = np.empty(0, dtype=np.int64)
    pairs = pairs[rng.permutation(pairs.shape[0])[: n["interactions"]]]
    write_rows(os.path.join(folder, f"{NAME}.inter"), ["user_id:token", "item_id:token", "timestamp:float"],
               ((u, i, t) for t, (u, i) in enumerate(pairs)))
    top, middle = n["tags"] // 10, 3 * n["tags"] // 10
    levels = np.repeat([1, 2, 3], [top, middle, n["tags"] - top - middle])
    write_rows(os.path.join(folder, f"{NAME}.tag"), ["tag_id:token", "tag_name:token", "tag_level:float"],
               ((f"t{t}", f"t{t}", levels[t]) for t in range(n["tags"])))
    by_level = {level: np.flatnonzero(levels == level) for level in (1, 2, 3)}
    children = np.concatenate([by_level[2], by_level[3]])
    edges = set()
    while len(edges) < min(n["edges"], children.size * len(by_level[1])):
        child = children[rng.integers(children.size)]
        parents = by_level[levels[child] - 1]
        edges.add((parents[rng.integers(parents.size)], child))
    write_rows(os.path.join(folder, f"{NAME}.tagedge"), ["parent_tag_id:token", "child_tag_id:token"],
               ((f"t{p}", f"t{c}") for p, c in sorted(edges)))
    link_items = rng.integers(0, n["items"], n["links"])
    link_tags = power_law_draws(rng, n["tags"], n["links"])
    links = np.unique(np.stack([link_items, link_tags], axis=1), axis=0)
    write_rows(os.path.join(folder, f"{NAME}.itemtag"), ["item_id:token", "tag_id:token"],
               ((i, f"t{t}") for i, t in links))
    return {"users": n["users"], "items": n["items"], "interactions": int(pairs.shape[0]), "tags": n["tags"],
            "edges": len(edges), "links": int(links.shape[0])}


def time_steps(model, settings, data_path, steps, results):
    """In a child process: build the model on the dataset and time ``steps`` training steps."""
    import resource

    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hyperllm.quick_start import create_config
    from recbole_hyperllm.utils import get_model, get_trainer

    files = [str(ROOT / "properties" / "beauty" / "HGCF.yaml")]
    config = create_config(model, NAME, files, dict(settings, data_path=data_path, show_progress=False, state="ERROR",
                                                  checkpoint_dir=os.path.join(data_path, "saved")))
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    net = get_model(model)(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    batches = iter(train)
    seconds = []
    for step in range(steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        trainer.optimizer.zero_grad()
        sum(net.calculate_loss(batch)).backward()
        trainer.optimizer.step()
        if step:  # the first step warms up
            seconds.append(time.perf_counter() - start)
    results.put({"step_seconds": seconds, "steps_per_epoch": len(train),
                 "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "torch": torch.__version__})


def _child(model, payload, _files, results, _dataset):
    """``run_in_subprocess``'s target (module level, so the spawned process can import it)."""
    time_steps(model, payload["settings"], payload["folder"], payload["steps"], results)


def provenance(argv):
    from reproduce_table3 import run_stamp

    return {**run_stamp("cost_growth.py", " ".join(argv)), "threads": os.environ.get("OMP_NUM_THREADS", "default")}


def markdown(results):
    lines = ["| scale | users | items | interactions | model | step s (median) | steps/epoch | s/epoch (est.) | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, entry in sorted(results.items(), key=lambda kv: (kv[1]["scale"], kv[0])):
        if "error" in entry:
            lines.append(f"| {entry['scale']}x | | | | {entry['model']} | error: {entry['error'][:80]} | | | |")
            continue
        size = entry["sizes"]
        lines.append(f"| {entry['scale']}x | {size['users']} | {size['items']} | {size['interactions']} | {entry['model']} | "
                     f"{entry['step_median']:.3f} | {entry['steps_per_epoch']} | {entry['epoch_seconds']:.1f} | "
                     f"{entry['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e .[plot]): no plot")
        return None
    figure, axes = plt.subplots(figsize=(6, 4.2))
    for label in MODELS:
        points = sorted((e["sizes"]["items"], e["epoch_seconds"]) for e in results.values()
                        if e.get("model") == label and "error" not in e)
        if points:
            axes.loglog(*zip(*points), marker="o", label=label)
    axes.set_xlabel("items (users scale alike: 1x-8x Beauty)")
    axes.set_ylabel("seconds per training epoch (from timed steps)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def main(argv=None):
    from reproduce_table3 import run_in_subprocess

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--workdir", default="/tmp/cost-growth")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cost_growth.json"))
    parser.add_argument("--note", default="", help="conditions of the run, printed in the table's header")
    parser.add_argument("--markdown", action="store_true", help="only (re)write the table and plot of --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for scale in ([] if args.markdown else [int(s) for s in args.scales.split(",")]):
        folder = os.path.join(args.workdir, f"scale{scale}")
        sizes_file = os.path.join(folder, NAME, "sizes.json")
        if not os.path.isfile(sizes_file):
            sizes = make_dataset(os.path.join(folder, NAME), scale)
            Path(sizes_file).write_text(json.dumps(sizes))
        sizes = json.loads(Path(sizes_file).read_text())
        for label in args.models.split(","):
            key = f"{label}@{scale}"
            if key in results and "error" not in results[key]:
                continue
            model, settings = MODELS[label]
            print(f"{key}: timing {args.steps} steps ...", flush=True)
            payload = {"settings": dict(settings), "folder": folder, "steps": args.steps}
            run = run_in_subprocess(model, payload, None, dataset=None, target=_child)
            entry = {"model": label, "scale": scale, "sizes": sizes, **provenance(sys.argv[1:] if argv is None else argv)}
            if "error" in run:
                entry["error"] = run["error"]
            else:
                median = statistics.median(run["step_seconds"])
                entry.update(run, step_median=median, epoch_seconds=median * run["steps_per_epoch"])
            results[key] = entry
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
            print(f"{key}: {entry.get('epoch_seconds', entry.get('error'))}", flush=True)
    table = markdown(results)
    runs = sorted({(e["command"], e["commit"], e["machine"], e["threads"]) for e in results.values() if "command" in e})
    dates = sorted(e["date"] for e in results.values() if "date" in e)
    header = "".join(f"Command: `{c}`; commit {k}; machine {m}; OMP_NUM_THREADS={t}  \n" for c, k, m, t in runs)
    out.with_suffix(".md").write_text(
        header + (f"Runs: {dates[0]} to {dates[-1]}  \n" if dates else "") + (f"Conditions: {args.note}  \n" if args.note else "")
        + "Seconds per epoch are estimated from the timed training steps (median x steps per epoch), training only "
        "(no loader sampling, no validation).\n\n" + table + "\n")
    print(table)
    print("plot:", plot(results, str(out.with_suffix(".png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
