"""SeLLaRec on ml-100k against RecBole's DeepFM, the yes/no LLM alone (step 1, TALLRec-like) and the aligned MF
alone (step 2), on the same split and labels (rating >= 4), with the shipped small LLM (SmolLM2-135M, cut to
``llm_layers`` layers), offline.

    python benchmarks/sellarec_ml100k.py                  # 150 evaluation users, writes results/sellarec_ml100k.*
    python benchmarks/sellarec_ml100k.py --users 0        # every user (about 10k validation + 10k test rows)

Split: the plugin's fixed per-user 8:1:1 split of ml-100k (``dataset_tools.default_data``). Every model trains on
the whole training split; validation and test keep the rows of ``--users`` users drawn with ``--seed`` (the LLM
scores every evaluated row, about 0.1 s a row on one CPU thread with 4 layers; the paper's own ML-1M set is a
subsample of 839 users). Each model runs in its own process, so its peak memory (ru_maxrss) is its own; the steps'
caches are shared, so the order is: the LLM alone (trains step 1), SeLLaRec (trains step 2, reuses step 1, trains
step 3), the MF alone (reads step 2), DeepFM. Writes ``benchmarks/results/sellarec_ml100k.{json,md}``.
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

RUNS = (  # name, model, extra config
    ("LLM yes/no alone (step 1, TALLRec-like)", "SeLLaRec", {"sella_variant": "llm_only"}),
    ("SeLLaRec (steps 1-3)", "SeLLaRec", {"sella_variant": "full"}),
    ("MF + alignment alone (step 2)", "SeLLaRec", {"sella_variant": "mf_only"}),
    ("DeepFM (RecBole)", "DeepFM", {}),
)
DEEPFM = {  # RecBole's DeepFM on the same data keys as SeLLaRec.yaml; RecBole's model defaults otherwise
    "learner": "adam", "learning_rate": 0.001, "train_batch_size": 2048, "eval_batch_size": 4096, "epochs": 30,
    "stopping_step": 5, "weight_decay": 0.0,
}
DATA_KEYS = ("load_col", "threshold", "train_neg_sample_args", "eval_args", "metrics", "valid_metric", "topk")


def subsample(data_path, users, seed):
    """(dataset name, data_path): ml-100k's split with the validation and test rows of ``users`` users drawn with
    ``seed`` (0: all users, the split itself); the training split and the items are the same files."""
    from dataset_tools.common import write_atomic_file
    from dataset_tools.default_data import prepare_inputs

    prepare_inputs("SeLLaRec", "ml-100k", None, {"data_path": data_path})
    source = os.path.join(data_path, "ml-100k")
    if not users:
        return "ml-100k", data_path
    name = f"ml-100k-u{users}s{seed}"
    folder = os.path.join(data_path, name)
    for part in ("train", "valid", "test", "item"):
        suffix = f"{part}.inter" if part != "item" else "item"
        with open(os.path.join(source, f"ml-100k.{suffix}"), encoding="utf-8") as handle:
            header = handle.readline().rstrip("\n").split("\t")
            rows = [line.rstrip("\n").split("\t") for line in handle]
        if part == "valid":
            everyone = sorted({r[0] for r in rows}, key=int)
            chosen = set(random.Random(seed).sample(everyone, users))
        if part in ("valid", "test"):
            rows = [r for r in rows if r[0] in chosen]
        write_atomic_file(os.path.join(folder, f"{name}.{suffix}"), header, rows)
    return name, data_path


def run_one(model, dataset, data_path, extra, out, overrides):
    """Train and test one model in this process; writes its summary to ``out``."""
    import torch

    torch.set_num_threads(1)
    from recbole_hyperllm.quick_start import run_recbole_hyperllm

    base = {"data_path": data_path, "benchmark_filename": ["train", "valid", "test"], "show_progress": False}
    extra = dict(extra, **overrides)
    started = time.perf_counter()
    if model == "SeLLaRec":
        result = run_recbole_hyperllm("SeLLaRec", dataset, config_dict=dict(base, **extra))
    else:
        import yaml

        with open(os.path.join(ROOT, "properties", "model", "SeLLaRec.yaml"), encoding="utf-8") as handle:
            sella = yaml.safe_load(handle)
        deepfm = dict(DEEPFM, **{k: v for k, v in overrides.items() if k in DEEPFM})
        result = run_ctr_baseline(model, dataset, dict(base, **{k: sella[k] for k in DATA_KEYS}, **deepfm))
    steps = result.get("phase1") or {}
    step = steps.get("step2" if extra.get("sella_variant") == "mf_only" else "step1", {})
    summary = {
        "test": result["test_result"], "valid": result["best_valid_result"], "epochs": result["epochs"],
        "best_epoch": result["best_epoch"],
        "sec_per_epoch": result["train_sec_per_epoch"] if result["epochs"] else step.get("sec_per_epoch"),
        "sec_per_epoch_is": "RecBole training epoch" if result["epochs"] else "the cached step's epoch",
        "steps": steps, "seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    from reproduce_table3 import replace_text

    replace_text(out, json.dumps(summary, indent=1, default=str))


def run_ctr_baseline(model, dataset, config_dict):
    """A RecBole CTR model through SeLLaRec's trainer (RecBole's loop plus GAUC/UAUC), as quick_start runs it."""
    import statistics

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_logger, init_seed

    from recbole_hyperllm.model.sella import CTRTrainer
    from recbole_hyperllm.quick_start import preflight
    from recbole_hyperllm.utils import get_model

    config, _, _ = preflight(model, dataset, None, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(model)(config, train.dataset).to(config["device"])
    trainer = CTRTrainer(config, net)
    _, best_valid = trainer.fit(train, valid, saved=True, show_progress=False)
    test_result = trainer.evaluate(test, load_best_model=True)
    return {"test_result": dict(test_result), "best_valid_result": dict(best_valid), "epochs": len(trainer.train_seconds),
            "best_epoch": trainer.best_epoch, "train_sec_per_epoch": statistics.median_high(trainer.train_seconds)}


def fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def auc_of(record, prefix):
    """``test AUC x`` of the run whose name starts with ``prefix``, as measured (or ``not measured``)."""
    for name, row in record["runs"].items():
        if name.startswith(prefix) and "test" in row:
            return f"test AUC {row['test']['auc']:.4f}"
    return "not measured"


def markdown(record):
    users = record["users"]
    scope = (f"validation and test rows of {users} users drawn with seed {record['seed']} ({record['rows']['valid']} "
             f"validation, {record['rows']['test']} test rows); training on the whole training split "
             f"({record['rows']['train']} rows)") if users else "every user"
    lines = [
        "# SeLLaRec on ml-100k (offline, shipped small LLM)", "",
        f"Label: rating >= 4. Split: the plugin's fixed per-user 8:1:1 split of ml-100k; evaluated on the {scope}. "
        f"LLM: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32), first {record['llm_layers']} of 30 decoder "
        f"layers, {record['history_len']} history titles a prompt, {record['llm_train_rows']} training rows per LLM "
        "epoch (steps 1 and 3), one epoch each. AUC and LogLoss: RecBole's; GAUC: RecBole's formula (per-user AUC "
        "weighted by the user's positives); UAUC: the paper's (per-user AUC averaged over users); both over users "
        "with both labels.", "",
        f"Run: `{record['stamp']['command']}`, commit {record['stamp']['commit']}, {record['stamp']['date']}, "
        f"{record['stamp']['machine']}, one thread (OMP_NUM_THREADS=1).", "",
        "| model | test AUC | test GAUC | test UAUC | test LogLoss | valid AUC | s / epoch | epochs | peak RSS MB | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in record["runs"].items():
        if "error" in row:
            lines.append(f"| {name} | error: {row['error']} | | | | | | | | |")
            continue
        t, v = row["test"], row["valid"] or {}
        lines.append(f"| {name} | {fmt(t.get('auc'))} | {fmt(t.get('gauc'))} | {fmt(t.get('uauc'))} | "
                     f"{fmt(t.get('logloss'))} | {fmt(v.get('auc'))} | {fmt(row['sec_per_epoch'], 1)} | {row['epochs']} | "
                     f"{fmt(row['peak_rss_mb'], 0)} | {fmt(row['seconds'], 0)} |")
    lines += [
        "", "s / epoch: one RecBole training epoch (SeLLaRec: step 3 over the capped rows; DeepFM: every training "
        "row); for the two steps reported alone, one epoch of that step as cached (step 1: the capped rows; step 2: "
        "the MF over every training row). The LLM alone and the MF alone train nothing in RecBole: they are "
        "evaluated as steps 1 and 2 left them. Peak RSS is each model's own process.", "",
        "## What this small model cannot show", "",
        "The paper's claim is that collaborative knowledge, aligned into the LLM's semantic space and spliced into "
        "the prompt as three tokens, improves a 7B LLM recommender (Qwen2-7B, hidden size 3584, every training row) "
        "over TALLRec-style tuning and over collaborative models. This run cannot test that claim. The LLM here is "
        f"a 135M model cut to {record['llm_layers']} of its 30 layers and tuned on {record['llm_train_rows']} rows "
        "for one epoch per step: it knows little about the films behind the titles, so the yes/no LLM alone "
        f"({auc_of(record, 'LLM yes/no')}) measures how far a few hundred rows move a tiny model, not the world "
        "knowledge a 7B model brings; the hidden state of \"Movie: {title}\" after "
        f"{record['llm_layers']} layers is a weak semantic target for the alignment; and the spliced tokens pass the "
        "MF's signal "
        f"({auc_of(record, 'MF +')}) through a barely tuned LoRA (SeLLaRec: {auc_of(record, 'SeLLaRec')}). "
        "Where SeLLaRec lands between or beside the MF and DeepFM "
        f"({auc_of(record, 'DeepFM')}) says how well a tiny LLM carries collaborative tokens, not whether semantic "
        "alignment helps a 7B model. The evaluation is a user subsample and one seed: GAUC and UAUC over "
        f"{record['users'] or 'all'} users are noisy.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=150, help="evaluation users (0: all)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--data_path", default=os.path.join(ROOT, "dataset"))
    parser.add_argument("--only", default=None, help="run only the runs whose name contains this")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run (a smoke test: --set llm_train_rows=16)")
    parser.add_argument("--results", default=RESULTS, help="folder of the json and md tables")
    parser.add_argument("--markdown", action="store_true", help="only rewrite the md table from the json")
    parser.add_argument("--one", nargs=3, metavar=("INDEX", "DATASET", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = {k: json.loads(v) if v[:1] in "0123456789-[{" else v for k, v in (s.split("=", 1) for s in args.set)}
    if args.one:
        name, model, extra = RUNS[int(args.one[0])]
        sys.argv = sys.argv[:1]  # RecBole reads --key=value from the command line
        return run_one(model, args.one[1], args.data_path, extra, args.one[2], overrides)
    from reproduce_table3 import replace_text, run_stamp

    if args.markdown:
        path = os.path.join(args.results, "sellarec_ml100k.json")
        with open(path, encoding="utf-8") as handle:
            text = markdown(json.load(handle))
        return replace_text(path[:-5] + ".md", text)
    from recbole_hyperllm.quick_start import create_config

    dataset, data_path = subsample(args.data_path, args.users, args.seed)
    defaults = create_config("SeLLaRec", "ml-100k")
    folder = os.path.join(data_path, dataset)
    rows = {part: sum(1 for _ in open(os.path.join(folder, f"{dataset}.{part}.inter"), encoding="utf-8")) - 1
            for part in ("train", "valid", "test")}
    defaults = {k: overrides.get(k, defaults[k]) for k in ("llm_layers", "history_len", "llm_train_rows")}
    record = {"stamp": run_stamp("sellarec_ml100k.py", " ".join(sys.argv[1:])), "users": args.users,
              "seed": args.seed, "dataset": dataset, "rows": rows,
              **{k: defaults[k] for k in ("llm_layers", "history_len", "llm_train_rows")}, "runs": {}}
    os.makedirs(args.results, exist_ok=True)
    out = os.path.join(args.results, "sellarec_ml100k.json")
    for index, (name, _, _) in enumerate(RUNS):
        if args.only and args.only not in name:
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        part = os.path.join(args.results, f".sellarec_run{index}.json")
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--data_path", data_path,
                               *[f"--set={s}" for s in args.set], "--one", str(index), dataset, part], cwd=ROOT)
        if done.returncode == 0 and os.path.isfile(part):
            with open(part, encoding="utf-8") as handle:
                record["runs"][name] = json.load(handle)
            os.remove(part)
        else:
            record["runs"][name] = {"error": f"exit status {done.returncode}"}
        replace_text(out, json.dumps(record, indent=1, default=str))
        replace_text(out[:-5] + ".md", markdown(record))
        print(markdown(record).split("| --- |")[-1], flush=True)


if __name__ == "__main__":
    main()
