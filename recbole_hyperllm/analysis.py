"""The paper's analyses as commands that draw them (HyperLLM, SIGIR 2025, Sections 5.4-5.7).

    python -m recbole_hyperllm.analysis groups     CKPT [CKPT ...]  --out DIR   # Figure 4
    python -m recbole_hyperllm.analysis convergence RUN [RUN ...]   --out DIR   # Figure 3
    python -m recbole_hyperllm.analysis dendrogram CKPT_A CKPT_B    --out DIR   # Figure 5
    python -m recbole_hyperllm.analysis ablation   RUN [RUN ...]    --out DIR   # Figure 2

CKPT is a best-model checkpoint a run wrote (``<Model>-<stamp>.pth``); RUN is a run's record
(``<Model>-<stamp>-result.json``, written beside its checkpoint) or its progress file (``-last.pth``).
``--labels`` names the inputs in the figures (default: the model, with variant/ablation). Every kind
writes ``<kind>.png`` (matplotlib, headless: ``pip install -e .[plot]``) and ``<kind>.json`` (the numbers
drawn) into ``--out`` and prints both paths.

* ``groups``: the users evaluated at test time, split into 5 groups of equal size by their number of
  training interactions (G1 the sparsest; ties in user order, as the paper's Section 5.6); test Recall@20
  and NDCG@20 per group from RecBole's own metric classes (their per-user values, averaged in a group,
  so the size-weighted mean over groups is RecBole's overall metric), and each model's relative
  improvement over the first on a second axis.
* ``convergence``: validation Recall@20 after every evaluated epoch, one line per run.
* ``dendrogram``: Ward linkage (scipy, as the paper cites) of the same random items in both models,
  side by side, each cut into ``--clusters`` coloured clusters. The representation clustered is the
  item's propagated point mapped to the tangent space at the origin (log_0): Ward needs Euclidean vectors,
  and log_0 keeps the hyperbolic model's directions and its distances from the origin exactly (only
  distances between points off the origin are distorted); the propagated point is what ranking uses.
* ``ablation``: the runs' test Recall@20 and NDCG@20 in one table and a grouped bar chart; a run that
  diverged is shown as diverged (the paper's NaN), not dropped.
"""
import argparse
import json
import os
import sys

import numpy as np

from recbole_hyperllm.errors import ConfigError
from recbole_hyperllm.provenance import code_commit, machine, utc_date

KINDS = ("groups", "convergence", "dendrogram", "ablation")
N_GROUPS = 5


class AnalysisError(ValueError):
    """An input cannot be analysed; the message names it and what was expected."""


# ----- inputs --------------------------------------------------------------------------------------------------
def load_checkpoint(path):
    """(config, model, train, test data) of a best-model checkpoint, its test protocol applied."""
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hyperllm.distributed import numpy_2_names
    from recbole_hyperllm.quick_start import use_test_protocol
    from recbole_hyperllm.trainer import load_trusted_checkpoint
    from recbole_hyperllm.utils import get_model

    state = load_trusted_checkpoint(path, "cpu")
    if not isinstance(state, dict) or "config" not in state or "state_dict" not in state:
        raise AnalysisError(f"{path} is not a best-model checkpoint of a run (no config/state_dict); pass the "
                            "'<Model>-<stamp>.pth' a run wrote")
    config = state["config"]
    numpy_2_names()
    config.compatibility_settings()  # RecBole's numpy aliases (np.float ...), set when a Config is built
    config["device"] = torch.device("cpu")
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    use_test_protocol(config, valid, test)
    net = get_model(config["model"])(config, train.dataset)
    net.load_state_dict(state["state_dict"])
    net.load_other_parameter(state.get("other_parameter"))
    net.eval()
    return config, net, train, test


def same_data(paths, configs):
    """Every checkpoint is of the first one's dataset and split (else the groups/items would differ)."""
    first = (configs[0]["dataset"], configs[0]["data_path"], str(configs[0]["benchmark_filename"]), configs[0]["seed"])
    for path, config in zip(paths[1:], configs[1:]):
        other = (config["dataset"], config["data_path"], str(config["benchmark_filename"]), config["seed"])
        if other[:3] != first[:3] or (not config["benchmark_filename"] and other[3] != first[3]):
            raise AnalysisError(f"{path} is a run on {other[0]} ({other[1]}), but {paths[0]} is on {first[0]} "
                                f"({first[1]}); compare models of one dataset and split")


def read_run(path):
    """A run's record (``-result.json``) or progress file (``-last.pth``) as a dict with 'settings',
    'valid_results' (per evaluated epoch), 'eval_step' and, from a record, test metrics or 'diverged'."""
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise AnalysisError(f"{path}: not a readable run record ({error})") from None
        progress = record.get("progress_file")
        if progress and os.path.isfile(progress):
            record.update({k: v for k, v in read_run(progress).items() if k in ("valid_results", "eval_step")})
        return record
    from recbole_hyperllm.errors import CheckpointError
    from recbole_hyperllm.trainer import load_trusted_checkpoint

    try:
        state = load_trusted_checkpoint(path, "cpu")
    except CheckpointError as error:
        raise AnalysisError(str(error)) from None
    if not isinstance(state, dict) or "valid_results" not in state:
        raise AnalysisError(f"{path} holds no validation history: pass a run's '-result.json' or '-last.pth' "
                            "(written by this plugin's trainer)")
    return {"settings": {"model": state["model"], "dataset": state["dataset"]},
            "valid_results": state["valid_results"], "eval_step": state.get("eval_step", 1)}


def label_of(settings):
    model = settings.get("model", "?")
    variant, ablation = settings.get("variant"), settings.get("ablation")
    extra = [v for v in (variant if variant not in (None, "HyperLLM") else None,
                         ablation if ablation not in (None, "none") else None) if v]
    return model + (f" ({', '.join(extra)})" if extra else "")


# ----- groups (Figure 4) ---------------------------------------------------------------------------------------
def user_groups(train_counts, n_groups=N_GROUPS):
    """Indices 0..len-1 split into ``n_groups`` groups of (nearly) equal size by ascending count; ties keep
    the given order (stable sort). Group 0 is the sparsest."""
    order = np.argsort(np.asarray(train_counts), kind="stable")
    return np.array_split(order, n_groups)


def per_user_topk(trainer, test_data):
    """(users, RecBole's 'rec.topk' matrix) of the full-sort test data: one row per evaluated user, its hits
    in the top max(topk) and its number of test items (RecBole's collector, as ``Trainer.evaluate``)."""
    import torch

    users = []
    trainer.tot_item_num = test_data._dataset.item_num
    trainer.item_tensor = test_data._dataset.get_item_feature().to(trainer.device)
    with torch.no_grad():
        for batch in test_data:
            interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
            trainer.eval_collector.eval_batch_collect(scores, interaction, positive_u, positive_i)
            users.append(interaction[trainer.model.USER_ID].cpu())
    struct = trainer.eval_collector.get_data_struct()
    return torch.cat(users).numpy(), struct.get("rec.topk").numpy()


def group_metrics(config, net, train, test, k=20):
    """Per-group test Recall@k and NDCG@k (RecBole's metric classes, per user then averaged) and the overall
    values; groups by training interactions of the evaluated users."""
    from recbole.evaluator.metrics import NDCG, Recall

    from recbole_hyperllm.utils import get_trainer

    topk_config = {"topk": [k], "metric_decimal_place": 8}
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    users, rec = per_user_topk(trainer, test)
    pos_index, pos_len = rec[:, :-1].astype(bool), rec[:, -1]
    recall = Recall(topk_config).metric_info(pos_index, pos_len)[:, k - 1]
    ndcg = NDCG(topk_config).metric_info(pos_index, pos_len)[:, k - 1]
    counts = np.bincount(train.dataset.inter_feat[train.dataset.uid_field].numpy(), minlength=train.dataset.user_num)
    groups = user_groups(counts[users])
    return {
        "groups": [{"users": int(g.size), "train_interactions": [int(counts[users[g]].min()), int(counts[users[g]].max())],
                    f"recall@{k}": float(recall[g].mean()), f"ndcg@{k}": float(ndcg[g].mean())} for g in groups],
        "overall": {f"recall@{k}": float(recall.mean()), f"ndcg@{k}": float(ndcg.mean()), "users": int(users.size)},
    }


def groups(paths, labels, out):
    loaded = [load_checkpoint(p) for p in paths]
    same_data(paths, [c for c, *_ in loaded])
    data = {"kind": "groups", "inputs": list(paths), "labels": labels, "models": []}
    for label, (config, net, train, test) in zip(labels, loaded):
        data["models"].append({"label": label, **group_metrics(config, net, train, test)})
    base = data["models"][0]["groups"]
    for model in data["models"][1:]:
        for mine, first in zip(model["groups"], base):
            mine["improvement_%"] = {m: 100.0 * (mine[m] / first[m] - 1.0) if first[m] else None
                                     for m in ("recall@20", "ndcg@20")}
    return data, draw_groups


def draw_groups(plt, data, path):
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = [f"G{i + 1}" for i in range(N_GROUPS)]
    width = 0.8 / len(data["models"])
    for metric, ax in zip(("recall@20", "ndcg@20"), axes):
        for m, model in enumerate(data["models"]):
            ax.bar(np.arange(N_GROUPS) + m * width, [g[metric] for g in model["groups"]], width, label=model["label"])
        ax.set_xticks(np.arange(N_GROUPS) + width * (len(data["models"]) - 1) / 2, names)
        ax.set_title(f"test {metric} by training interactions (G1 sparsest)")
        if len(data["models"]) > 1:
            twin = ax.twinx()
            for model in data["models"][1:]:
                twin.plot(np.arange(N_GROUPS) + width * (len(data["models"]) - 1) / 2,
                          [g["improvement_%"][metric] for g in model["groups"]], marker="o", color="black")
            twin.set_ylabel(f"improvement over {data['models'][0]['label']} (%)")
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ----- convergence (Figure 3) ----------------------------------------------------------------------------------
def convergence(paths, labels, out, metric="recall@20"):
    runs = []
    for path, label in zip(paths, labels):
        run = read_run(path)
        history = run.get("valid_results") or []
        if not history or metric not in history[0]:
            raise AnalysisError(f"{path}: no validation {metric} per epoch (run with '{metric.split('@')[0]}' in "
                                "metrics and its k in topk)")
        step = int(run.get("eval_step") or 1)
        runs.append({"label": label, "epochs": [(i + 1) * step - 1 for i in range(len(history))],
                     metric: [h[metric] for h in history]})
    return {"kind": "convergence", "metric": metric, "inputs": list(paths), "runs": runs}, draw_convergence


def draw_convergence(plt, data, path):
    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for run in data["runs"]:
        axes.plot(run["epochs"], run[data["metric"]], label=run["label"])
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"validation {data['metric']}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ----- dendrogram (Figure 5) -----------------------------------------------------------------------------------
def item_tangents(path, net):
    """log_0 of the propagated item points (rows: internal item ids from 1; row 0 is padding)."""
    import torch

    manifold = getattr(net, "manifold", None)
    if manifold is None or not hasattr(manifold, "logmap0") or not hasattr(net, "n_users"):
        raise AnalysisError(f"{path}: {type(net).__name__} has no hyperbolic representation to cluster; pass "
                            "checkpoints of this plugin's models")
    with torch.no_grad():
        points = net.forward()
        return manifold.logmap0(points[net.n_users:]).numpy()


def dendrogram(paths, labels, out, items=200, clusters=5, seed=0):
    from scipy.cluster.hierarchy import cophenet, fcluster, linkage
    from scipy.spatial.distance import pdist

    if len(paths) != 2:
        raise AnalysisError(f"dendrogram compares two models; got {len(paths)} checkpoints")
    loaded = [load_checkpoint(p) for p in paths]
    same_data(paths, [c for c, *_ in loaded])
    n_items = loaded[0][1].n_items
    chosen = np.sort(np.random.default_rng(seed).choice(np.arange(1, n_items), size=min(items, n_items - 1),
                                                        replace=False))
    data = {"kind": "dendrogram", "inputs": list(paths), "representation": "log_0 of propagated item points",
            "items": chosen.tolist(), "clusters": clusters, "models": []}
    for path, label, (_, net, _, _) in zip(paths, labels, loaded):
        vectors = item_tangents(path, net)[chosen].astype(np.float64)
        tree = linkage(vectors, method="ward")
        cut = fcluster(tree, clusters, criterion="maxclust")
        data["models"].append({"label": label, "linkage": tree.tolist(),
                               "cophenetic_correlation": float(cophenet(tree, pdist(vectors))[0]),
                               "cluster_sizes": np.bincount(cut)[1:].tolist(),
                               "merge_heights_quartiles": np.quantile(tree[:, 2], [0.25, 0.5, 0.75, 1.0]).tolist()})
    return data, draw_dendrogram


def draw_dendrogram(plt, data, path):
    from scipy.cluster.hierarchy import dendrogram as draw

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, model in zip(axes, data["models"]):
        tree = np.asarray(model["linkage"])
        threshold = tree[-(data["clusters"] - 1), 2] if data["clusters"] > 1 else tree[-1, 2] + 1
        draw(tree, ax=ax, color_threshold=threshold, no_labels=True, above_threshold_color="grey")
        ax.set_title(f"{model['label']}\n{len(data['items'])} items, Ward on log_0, {data['clusters']} clusters")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ----- ablation (Figure 2) -------------------------------------------------------------------------------------
def ablation(paths, labels, out):
    rows = []
    for path, label in zip(paths, labels):
        run = read_run(path)
        if run.get("diverged"):
            rows.append({"label": label, "diverged": run["diverged"], "recall@20": None, "ndcg@20": None})
            continue
        test = run.get("test_result")
        if not test:
            raise AnalysisError(f"{path}: no test result; pass the '-result.json' of a finished run")
        rows.append({"label": label, "recall@20": test.get("recall@20"), "ndcg@20": test.get("ndcg@20")})
    return {"kind": "ablation", "inputs": list(paths), "rows": rows}, draw_ablation


def draw_ablation(plt, data, path):
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = data["rows"]
    for ax, metric in zip(axes, ("recall@20", "ndcg@20")):
        values = [r[metric] if r[metric] is not None else 0.0 for r in rows]
        bars = ax.bar(range(len(rows)), values, color=["lightgrey" if r.get("diverged") else "C0" for r in rows])
        for bar, row in zip(bars, rows):
            if row.get("diverged"):
                ax.text(bar.get_x() + bar.get_width() / 2, 0, "diverged", rotation=90, ha="center", va="bottom")
        ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"test {metric}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ----- command line --------------------------------------------------------------------------------------------
def default_labels(kind, paths):
    labels = []
    for path in paths:
        if kind in ("convergence", "ablation"):
            try:
                labels.append(label_of(read_run(path).get("settings", {})))
                continue
            except AnalysisError:
                pass
        labels.append(os.path.basename(path).split("-")[0])
    return labels


def drawn_stamp():
    """When, where and from which code a figure was drawn: UTC date, machine, and ``provenance.code_commit()``."""
    return {"date": utc_date(), "commit": code_commit(), "machine": machine()}


def run(kind, paths, out, labels=None, command=None, **options):
    """Compute ``kind`` over ``paths``, write ``<out>/<kind>.json`` and ``<out>/<kind>.png``; returns both paths."""
    if kind not in KINDS:
        raise ConfigError(f"unknown analysis {kind!r}; use one of {KINDS}")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise AnalysisError(f"{missing[0]} not found")
    labels = list(labels or default_labels(kind, paths))
    if len(labels) != len(paths):
        raise AnalysisError(f"--labels names {len(labels)} inputs, but {len(paths)} were given")
    data, draw = {"groups": groups, "convergence": convergence, "dendrogram": dendrogram,
                  "ablation": ablation}[kind](paths, labels, out, **options)
    os.makedirs(out, exist_ok=True)
    json_path, png_path = os.path.join(out, f"{kind}.json"), os.path.join(out, f"{kind}.png")
    with open(json_path, "w", encoding="utf-8") as handle:
        if command is None and sys.argv and sys.argv[0].endswith("analysis.py"):
            command = " ".join(["python -m recbole_hyperllm.analysis", *sys.argv[1:]])
        json.dump({**data, "command": command, "drawn": drawn_stamp()}, handle, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AnalysisError(f"wrote {json_path}; the figure needs matplotlib: pip install -e .[plot]") from None
    draw(plt, data, png_path)
    plt.close("all")
    return json_path, png_path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_hyperllm.analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", help=" | ".join(KINDS))
    parser.add_argument("inputs", nargs="+", help="checkpoints (groups, dendrogram) or run records (convergence, ablation)")
    parser.add_argument("--out", default="analysis")
    parser.add_argument("--labels", default=None, help="comma-separated names of the inputs")
    parser.add_argument("--items", type=int, default=200, help="dendrogram: items sampled")
    parser.add_argument("--clusters", type=int, default=5, help="dendrogram: coloured clusters")
    args = parser.parse_args(argv)
    options = {"items": args.items, "clusters": args.clusters} if args.kind == "dendrogram" else {}
    try:
        paths = run(args.kind, args.inputs, args.out, args.labels.split(",") if args.labels else None, **options)
    except (AnalysisError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
