"""HGCF Base vs Structural vs Semantic vs HyperLLM on RecBole's bundled ml-100k, offline.

    python benchmarks/ml100k_variants.py --seeds 2020,2021,2022 --out benchmarks/results/ml100k_variants.json
    python benchmarks/ml100k_variants.py --markdown --out benchmarks/results/ml100k_variants.json

For each seed S: a random 8:1:1 split per user made with seed S (RecBole's RS
sizes, benchmark files), tags and summaries from the ``metadata`` provider (the
items' titles, years and genres; no LLM) and all-MiniLM-L6-v2 embeddings, all made
by the plugin's default-data path in ``--workdir/split{S}/ml-100k``; then every
model trains with seed S, one process each. Defaults of ``properties/`` (RSGD, lr
1e-3, margin 0.1, m1 0.1, m3 0.9, K 16, w 0.01, tau 0.5), RecBole's test mask
(training + validation items), selection on R@10+R@20+N@10+N@20.
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reproduce_table3 import (METRICS, parse_value, run_in_subprocess, save_results, split_model,  # noqa: E402
                              summarise)

MODELS = "HGCF,HyperLLM_HGCF:Structural,HyperLLM_HGCF:Semantic,HyperLLM_HGCF"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="2020,2021,2022")
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ml100k_variants.json"))
    parser.add_argument("--workdir", default="/tmp/hyperllm-ml100k")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra RecBole config")
    parser.add_argument("--rerun", action="store_true", help="run again what --out already holds")
    parser.add_argument("--markdown", action="store_true", help="only print the summary table of --out")
    return parser.parse_args(argv)


def markdown_table(results, models):
    lines = ["| model | R@10 | R@20 | N@10 | N@20 | seeds | best epochs | s/epoch |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in models:
        runs = [v for k, v in results.items() if k.split("@")[0] == name and "error" not in v]
        if not runs:
            continue
        cells = []
        for metric in METRICS:
            values = [r["test"][metric] for r in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
        epochs = ", ".join(str(r["best_epoch"]) for r in runs)
        speed = statistics.median(r["sec_per_epoch"] for r in runs)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(runs)} | {epochs} | {speed:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    out = Path(args.out)
    if args.markdown:
        print(markdown_table(json.loads(out.read_text()), models))
        return 0
    overrides = dict(item.split("=", 1) for item in args.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    results = json.loads(out.read_text()) if out.is_file() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = os.path.join(args.workdir, f"split{seed}")
        for name in models:
            key = f"{name}@{seed}"
            if key in results and "error" not in results[key] and not args.rerun:
                print(f"== {key}: kept from {out}", flush=True)
                continue
            model, variant = split_model(name)
            config_dict = {"data_path": root, "ml100k_split_seed": seed, "seed": seed, "show_progress": False,
                           "checkpoint_dir": os.path.join(root, "saved"), **variant, **overrides}
            print(f"== {key}", flush=True)
            result = run_in_subprocess(model, config_dict, [], dataset="ml-100k")
            results[key] = summarise(key, model, config_dict, result)
            save_results(out, results)
            entry = results[key]
            print(entry.get("error") or {m: entry["test"][m] for m in METRICS}, flush=True)
    print(markdown_table(results, models))
    return 1 if any("error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
