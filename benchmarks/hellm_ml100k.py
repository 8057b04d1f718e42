"""HeLLM on ml-100k, offline, with the shipped small LLM: HeLLM vs RecBole's SASRec vs HeLLM's stage 1 alone, on
the same time-ordered leave-one-out split, full ranking, Recall/NDCG/MRR at 5/10/20; seconds per epoch and peak
memory of each run; a probe of the LLM's cost per training step by layers and prompt length.

    python benchmarks/hellm_ml100k.py                       # all runs and the probe, then the tables
    python benchmarks/hellm_ml100k.py --markdown            # only rewrite the Markdown from the JSON
    python benchmarks/hellm_ml100k.py --runs SASRec --rerun # run one again

Options are space-separated (``--epochs 3``): RecBole reads ``--key=value`` arguments as its config keys.

Runs, each in its own process (its own peak memory), with ``checkpoint_dir`` under ``--workdir``:

* ``HeLLM``: the default command's configuration (``properties/model/HeLLM*.yaml``): the data step, stage 1
  (trained, cached), the LLM loaded, stage 2 trained and tested; ``wall s`` is that whole run.
* ``stage1``: ``--model=HeLLM --hellm_variant=stage1``: reads the stage-1 cache the HeLLM run wrote and scores
  s = g_u . g_i with the user's training items masked (a general model's protocol) on the test rows of the
  sequential split; no LLM.
* ``HeLLM_Pretrain``: stage 1 run alone as a RecBole general model (``--model=HeLLM_Pretrain``): RecBole's general
  leave-one-out by time (on ml-100k the same training pairs, so the same stage-1 cache), its test masking the
  user's training and validation items.
* ``SASRec``: RecBole's SASRec, cross-entropy over all items, the same split, ``MAX_ITEM_LIST_LENGTH`` and metrics,
  every training prefix each epoch (RecBole's protocol masks no history for sequential models, as for HeLLM),
  trained by the plugin's trainer (RecBole's ``Trainer`` with per-epoch timings; RecBole's default adam, lr 1e-3).
* ``HeLLM_linear``: HeLLM with the public code's free linear head (``hellm_head: linear``) instead of the CPU
  default's head tied to the stage-1 item embeddings; stage 1 from the cache.

The JSON keeps every finished run: a crashed benchmark resumes with the runs it lacks.
"""
import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reproduce_table3 import replace_text, run_in_subprocess, run_one, run_stamp, summarise  # noqa: E402

DATASET = "ml-100k"
# HeLLM first: it trains stage 1, as the default command does; the others read its cache
RUNS = ("HeLLM", "stage1", "HeLLM_Pretrain", "SASRec", "HeLLM_linear")
METRICS = tuple(f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (5, 10, 20))
SEQUENTIAL_PROTOCOL = {
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "metrics": ["Recall", "NDCG", "MRR"], "topk": [5, 10, 20], "valid_metric": "ndcg@10",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hellm_ml100k.json"))
    parser.add_argument("--data_path", default=str(ROOT / "dataset"), help="parent folder of ml-100k (made if absent)")
    parser.add_argument("--workdir", default="/tmp/hellm-ml100k", help="checkpoints and the stage-1 cache")
    parser.add_argument("--epochs", type=int, default=None, help="HeLLM epochs (default: HeLLM.yaml's)")
    parser.add_argument("--sasrec_epochs", type=int, default=50)
    parser.add_argument("--max_len", type=int, default=10, help="MAX_ITEM_LIST_LENGTH of SASRec (HeLLM.yaml's: 10)")
    parser.add_argument("--probe_layers", default="2,8,30")
    parser.add_argument("--probe_lengths", default="32,64,128,256")
    parser.add_argument("--probe_batch", type=int, default=8)
    parser.add_argument("--no_probe", action="store_true")
    parser.add_argument("--rerun", action="store_true", help="run again what --out already holds")
    parser.add_argument("--markdown", action="store_true", help="only write the Markdown of --out")
    return parser.parse_args(argv)


def run_configs(args):
    """{run name: (model, config dict)}."""
    common = {"data_path": args.data_path, "checkpoint_dir": os.path.join(args.workdir, "saved"),
              "show_progress": False, "seed": 2020}
    hellm = dict(common, **({"epochs": args.epochs} if args.epochs else {}))
    sasrec = dict(common, **SEQUENTIAL_PROTOCOL, MAX_ITEM_LIST_LENGTH=args.max_len, train_neg_sample_args=None,
                  loss_type="CE", epochs=args.sasrec_epochs, stopping_step=5, train_batch_size=2048,
                  eval_batch_size=256)
    return {"stage1": ("HeLLM", dict(hellm, hellm_variant="stage1")), "HeLLM": ("HeLLM", hellm),
            "SASRec": ("SASRec", sasrec), "HeLLM_linear": ("HeLLM", dict(hellm, hellm_head="linear")),
            "HeLLM_Pretrain": ("HeLLM_Pretrain", dict(common))}


def run_timed(model, config_dict, files, results, dataset=DATASET):
    """``run_one`` with the plugin's trainer for RecBole's own model too (RecBole's ``Trainer`` plus per-epoch
    timings; the same optimiser and early stopping), so SASRec reports seconds per epoch like HeLLM."""
    from recbole_hyperllm import quick_start
    from recbole_hyperllm.trainer import HyperbolicTrainer

    declared = quick_start.get_trainer
    quick_start.get_trainer = lambda model_type, name: (HyperbolicTrainer if name == "SASRec"
                                                        else declared(model_type, name))
    run_one(model, config_dict, files, results, dataset)


# ----- the probe: one LoRA training step of the shipped LLM by layers and prompt length ---------------------------
def probe_step(model, batch, length, hidden, steps=2):
    """Median seconds of a forward + backward (LoRA) over (batch, length) random input embeddings."""
    import torch

    times = []
    for _ in range(steps):
        embeds = torch.randn(batch, length, hidden, requires_grad=False) * 0.02
        start = time.perf_counter()
        out = model.get_base_model().model(inputs_embeds=embeds).last_hidden_state
        out[:, -1].pow(2).mean().backward()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def probe(layer_counts, lengths, batch, results):
    """[{layers, length, batch, sec_per_step, peak_rss_mb}] in increasing cost (the peak is the process's so far)."""
    import torch

    torch.set_num_threads(1)
    from recbole_hyperllm.llm import add_lora, load_causal_lm

    started = time.perf_counter()
    model, _ = load_causal_lm(None, "cpu")
    load_seconds = time.perf_counter() - started
    total_layers = len(model.model.layers)
    model = add_lora(model, r=8, alpha=16, dropout=0.0)
    decoder = model.get_base_model().model
    full = decoder.layers
    hidden = model.get_input_embeddings().embedding_dim
    rows = []
    for layers in sorted(min(n, total_layers) for n in layer_counts):
        decoder.layers = torch.nn.ModuleList(list(full)[:layers])
        decoder.config.num_hidden_layers = layers
        for length in sorted(lengths):
            seconds = probe_step(model, batch, length, hidden)
            rows.append({"layers": layers, "length": length, "batch": batch, "sec_per_step": seconds,
                         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})
            print(f"probe: {layers} layers, length {length}: {seconds:.2f} s per step", file=sys.stderr, flush=True)
    results.put({"load_seconds": load_seconds, "total_layers": total_layers, "hidden": hidden, "rows": rows})


def run_probe(args):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=probe, args=([int(x) for x in args.probe_layers.split(",")],
                                                  [int(x) for x in args.probe_lengths.split(",")],
                                                  args.probe_batch, results))
    process.start()
    try:
        return results.get()
    finally:
        process.join()


# ----- tables -------------------------------------------------------------------------------------------------------
def fmt(value, digits=4):
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def markdown(record):
    parts = [(name, run.get("stamp") or record["stamp"]) for name, run in record.get("runs", {}).items()]
    if record.get("probe"):
        parts.append(("probe", record["probe"].get("stamp") or record["stamp"]))
    lines = ["# HeLLM on ml-100k (offline, shipped SmolLM2-135M)", ""]
    for name, stamp in parts:
        lines.append(f"- {name}: `{stamp['command']}`, commit {stamp['commit']}, {stamp['date']}, {stamp['machine']}")
    lines += ["",
             "Time-ordered leave-one-out (each user's last item is the test, the one before it validation), full "
             "ranking over all items, RecBole's evaluator; best validation epoch by NDCG@10.", "",
             "| run | " + " | ".join(METRICS) + " | epochs | s/epoch (train+valid) | stage 1 s | wall s | peak MB |",
             "| --- |" + " ---: |" * (len(METRICS) + 5)]
    for name in RUNS:
        run = record["runs"].get(name)
        if run is None:
            lines.append(f"| {name} | not run |" + " |" * (len(METRICS) + 4))
            continue
        if "error" in run:
            lines.append(f"| {name} | error: {run['error'][:120]} |" + " |" * (len(METRICS) + 4))
            continue
        stage1 = run.get("phase1") or {}
        stage1_seconds = None if stage1.get("reused") else stage1.get("seconds")
        lines.append(f"| {name} | " + " | ".join(fmt(run["test"].get(m)) for m in METRICS)
                     + f" | {run['epochs']} | {fmt(run['sec_per_epoch'], 1)} | "
                     f"{fmt(stage1_seconds, 1) if stage1_seconds else ('cached' if stage1.get('reused') else '-')} | "
                     f"{fmt(run.get('wall_seconds', run['seconds']), 0)} | {fmt(run['peak_rss_mb'], 0)} |")
    settings = "; ".join(f"{name}: `{json.dumps(run.get('config'), sort_keys=True)}`"
                         for name, run in record.get("runs", {}).items())
    lines += ["", f"Settings (besides the YAML defaults): {settings}", "",
              f"HeLLM's CPU-sized defaults (`properties/model/HeLLM.yaml` when it ran): "
              f"`{json.dumps((record.get('runs', {}).get('HeLLM') or {}).get('hellm_yaml'))}`",
              "", "stage1: stage 1 alone, s = g_u . g_i with the user's training items masked (a general model's "
              "protocol); HeLLM and SASRec are scored as RecBole scores sequential models (no history masked). "
              "HeLLM: the CPU default, its head tied to the stage-1 item embeddings (`hellm_head: graph`); "
              "HeLLM_linear: the public code's free linear head. HeLLM_Pretrain: stage 1 run alone as a RecBole "
              "general model (the same training pairs; its test masks training and validation items).", ""]
    probe_record = record.get("probe")
    if probe_record:
        lines += [f"## Cost of one LoRA training step of SmolLM2-135M on this machine (one thread, batch "
                  f"{probe_record['rows'][0]['batch']})", "",
                  f"Loading the model took {probe_record['load_seconds']:.0f} s; it has {probe_record['total_layers']} "
                  f"layers of hidden size {probe_record['hidden']}. Peak memory is the probe process's so far "
                  "(rows in increasing cost).", "",
                  "| layers | prompt length | s per step | s per prompt | peak MB |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        for row in probe_record["rows"]:
            lines.append(f"| {row['layers']} | {row['length']} | {row['sec_per_step']:.2f} | "
                         f"{row['sec_per_step'] / row['batch']:.3f} | {row['peak_rss_mb']:.0f} |")
        largest = max(probe_record["rows"], key=lambda r: (r["layers"], r["length"]))
        prefixes = record.get("train_prefixes")
        if prefixes:
            per_epoch = largest["sec_per_step"] / largest["batch"] * prefixes / 3600
            total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
            lines += ["", f"Every configuration probed ran within this machine's {total_mb:.0f} MB; the largest "
                      f"({largest['layers']} layers, length {largest['length']}) would need about {per_epoch:.1f} h "
                      f"per epoch over all {prefixes} training prefixes on one thread: time, not memory, is the limit "
                      "here."]
    lines += ["", "## What the small model cannot show", "",
              "The paper's claim is about a 7B LLM (LLaMA-2-7B, all layers, LoRA, a prefix of graph context in every "
              "layer, full-length histories, every training prefix for many epochs): that the LLM's own knowledge "
              "and capacity, steered by the hypergraph context, beat sequential recommenders. This run cannot show "
              "that. SmolLM2-135M cut to a few layers has little world knowledge about the movies, sees item tokens "
              "that are projected vectors (no titles), short histories and a small sample of the training prefixes "
              "for a few epochs on a CPU. A gap to SASRec here says what this budget buys, not what HeLLM does at "
              "the paper's scale; a GPU run with all layers (`--llm_layers=0`), `MAX_ITEM_LIST_LENGTH=50`, "
              "`train_prefix_fraction=1` and the public code's epochs is the comparison the paper makes."]
    return "\n".join(lines) + "\n"


def backfill(record):
    """Runs kept from an earlier invocation get that invocation's stamp, and their config rebuilt from its command
    (the configs of one invocation are a function of its arguments)."""
    import shlex

    record.pop("configs", None)  # one table of configs for all runs: the format before per-run configs
    for kept in list(record.get("runs", {}).values()) + [record.get("probe") or {}]:
        kept.setdefault("stamp", record.get("stamp"))
    for name, run in record.get("runs", {}).items():
        if "config" not in run and run.get("stamp"):
            arguments = shlex.split(run["stamp"]["command"])[2:]
            run["config"] = run_configs(parse_args(arguments))[name][1]
        if "hellm_yaml" not in run and name.startswith("HeLLM") and name != "HeLLM_Pretrain":
            run["hellm_yaml"] = stage2_defaults()  # the YAML has not changed since those runs (same commit)


def stage2_defaults():
    """HeLLM's CPU-sized defaults as ``properties/model/HeLLM.yaml`` holds them."""
    import yaml

    with open(ROOT / "properties" / "model" / "HeLLM.yaml", encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    keys = ("llm_layers", "lora_r", "prefix_length", "hellm_head", "MAX_ITEM_LIST_LENGTH", "train_prefix_fraction",
            "train_batch_size", "epochs", "learner", "learning_rate")
    return {k: values[k] for k in keys}


def write(record, out):
    """``out`` and its table (.md), each replaced atomically."""
    replace_text(out, json.dumps(record, indent=1, default=str))
    replace_text(str(Path(out).with_suffix(".md")), markdown(record))


def count_train_prefixes(args):
    """RecBole's sequential training rows of ml-100k under the split (every interaction but each user's first and
    last two)."""
    import csv

    path = Path(args.data_path) / DATASET / f"{DATASET}.inter"
    per_user = {}
    with open(path, encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        for row in reader:
            per_user[row[0]] = per_user.get(row[0], 0) + 1
    return sum(max(n - 3, 0) for n in per_user.values())


def main(argv=None):
    args = parse_args(argv)
    record = {}
    if os.path.isfile(args.out):
        with open(args.out, encoding="utf-8") as handle:
            record = json.load(handle)
    if args.markdown:
        backfill(record)
        write(record, args.out)
        return record
    backfill(record)  # runs kept from an earlier invocation keep its stamp and config
    record["stamp"] = run_stamp("hellm_ml100k.py", " ".join(argv if argv is not None else sys.argv[1:]))
    record.setdefault("runs", {})
    configs = run_configs(args)
    for name in args.runs.split(","):
        if name in record["runs"] and "error" not in record["runs"][name] and not args.rerun:
            print(f"{name}: kept from {args.out}", file=sys.stderr)
            continue
        model, config = configs[name]
        print(f"{name}: training {model} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = run_in_subprocess(model, config, None, dataset=DATASET, target=run_timed)
        record["runs"][name] = dict(summarise(name, model, config, result), wall_seconds=time.perf_counter() - started,
                                    stamp=record["stamp"], config=config,
                                    hellm_yaml=stage2_defaults() if model == "HeLLM" else None)
        write(record, args.out)
    record["train_prefixes"] = count_train_prefixes(args)
    if not args.no_probe and (args.rerun or "probe" not in record):
        record["probe"] = dict(run_probe(args), stamp=record["stamp"])
    write(record, args.out)
    print(markdown(record))
    return record


if __name__ == "__main__":
    main()
