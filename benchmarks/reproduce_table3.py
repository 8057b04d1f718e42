"""Reproduce HyperLLM's Table 3 (Beauty: five backbones, Base and HyperLLM) through the plugin's public API.

    python benchmarks/reproduce_table3.py --data ../shared/data/hyperllm-official \
        --models HGCF,HyperLLM_HGCF,HRCF,HyperLLM_HRCF --out results/table3.json [--epochs N] [--seed S]

Model names: a plugin model (``HGCF``, ``HyperLLM_HGCF``) or a HyperLLM variant
written ``HyperLLM_HGCF:Structural`` / ``HyperLLM_HGCF:Semantic`` (variant over
the same YAML). Each runs in its own process (so ``peak_rss_mb`` is that run's)
with ``properties/beauty/dataset.yaml`` + ``properties/beauty/<model>.yaml``
(the authors' hyper-parameters). The release is converted with
``dataset_tools.from_official`` into ``--workdir`` (a temporary folder by
default); the release itself is never copied into the project.

Writes JSON: one object per model name with ``test`` and ``valid`` (RecBole's
metric keys), ``best_epoch``, ``epochs``, ``sec_per_epoch`` (median train +
validation seconds per epoch), ``peak_rss_mb``, ``seconds`` (whole run) and the
config used, then prints a table beside the paper's numbers.
If the release is absent it says so and exits 0 (nothing to reproduce).
"""
import argparse
import json
import multiprocessing
import os
import queue
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from recbole_hyperllm.provenance import code_commit, machine, utc_date  # noqa: E402  (the benchmarks' run stamps and their tests use it here)

DATASET = "Amazon_Beauty"
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
# Table 3 of the paper, Beauty column (also in the release README).
PAPER = {
    "HGCF": (0.1150, 0.1604, 0.0651, 0.0771),
    "HyperLLM_HGCF:Structural": (0.1176, 0.1656, 0.0675, 0.0801),
    "HyperLLM_HGCF:Semantic": (0.1281, 0.1848, 0.0722, 0.0870),
    "HyperLLM_HGCF": (0.1289, 0.1889, 0.0736, 0.0893),
    "HRCF": (0.1154, 0.1607, 0.0649, 0.0768),
    "HyperLLM_HRCF": (0.1297, 0.1904, 0.0736, 0.0895),
    "HICF": (0.1207, 0.1685, 0.0696, 0.0820),
    "HyperLLM_HICF": (0.1404, 0.1978, 0.0807, 0.0956),
    "HGCH": (0.1200, 0.1727, 0.0663, 0.0801),
    "HyperLLM_HGCH": (0.1296, 0.1861, 0.0725, 0.0872),
    "HyperCL": (0.1144, 0.1659, 0.0637, 0.0772),
    "HyperLLM_HyperCL": (0.1227, 0.1803, 0.0677, 0.0827),
}
# Table 4 of the paper, Beauty "Time" (seconds to converge, one RTX 3090), Base and HyperLLM rows.
PAPER_SECONDS = {"HGCF": 39, "HyperLLM_HGCF": 268, "HRCF": 42, "HyperLLM_HRCF": 331, "HICF": 49,
                 "HyperLLM_HICF": 254, "HGCH": 226, "HyperLLM_HGCH": 252, "HyperCL": 336, "HyperLLM_HyperCL": 246}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hyperllm-official"),
                        help="the authors' release: DIR/beauty and DIR/phase1")
    parser.add_argument("--models", default="HGCF,HyperLLM_HGCF")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "table3.json"))
    parser.add_argument("--epochs", type=int, default=None, help="cap on training epochs (smoke runs)")
    parser.add_argument("--seed", type=int, default=None, help="default: the YAML's seed (1234)")
    parser.add_argument("--workdir", default=None, help="where the converted atomic files go (default: temporary)")
    parser.add_argument("--rerun", action="store_true",
                        help="run models again that --out already holds (default: keep them, so a crashed "
                             "benchmark resumes where it stopped)")
    parser.add_argument("--markdown", action="store_true",
                        help="only print the table of --out as Markdown (no training)")
    parser.add_argument("--speed-markdown", action="store_true",
                        help="only print seconds per epoch of --out (and of every --speed-run) per backbone and "
                             "variant as Markdown, with the median of the added-cost estimates")
    parser.add_argument("--speed-run", action="append", default=[], metavar="JSON",
                        help="with --speed-markdown: another run's --out to take the medians over")
    parser.add_argument("--phase1-as-semantic", action="store_true",
                        help="give this project's phase 1 the released 16_50_0.1 vectors as its semantic input "
                             "(the release has no text embeddings); use with --set semantic_init=moe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra RecBole config for every model, e.g. --set test_mask=train_valid")
    return parser.parse_args(argv)


def split_label(name):
    """'HICF@capped' -> 'HICF': a label after '@' names a run with other --set values."""
    return name.partition("@")[0]


def split_model(name):
    """'HyperLLM_HGCF:Structural' -> ('HyperLLM_HGCF', {'variant': 'Structural'})."""
    model, _, variant = split_label(name).partition(":")
    return model, ({"variant": variant} if variant else {})


def config_files(model):
    files = [ROOT / "properties" / "beauty" / "dataset.yaml", ROOT / "properties" / "beauty" / f"{model}.yaml"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"no Beauty hyper-parameters for {model}: {missing} missing")
    return [str(f) for f in files]


def parse_value(text):
    import yaml
    return yaml.safe_load(text)


def parse_overrides(items):
    """``--set KEY=VALUE`` arguments -> {key: YAML value}; an item without '=' ends the run naming it."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: write KEY=VALUE")
        overrides[key] = parse_value(value)
    return overrides


# What --phase1-as-semantic gives this project's phase 1 as its input (recorded with each result).
SEMANTIC_STAND_IN = "released 16_50_0.1"


def convert(data, workdir, phase1_as_semantic=False):
    """The release as atomic files under ``workdir`` (its own subfolder when the released phase-1
    vectors also stand in for the semantic embeddings); converted once."""
    from dataset_tools.from_official import convert_release
    if phase1_as_semantic:
        workdir = Path(workdir) / "phase1-as-semantic"
    target = Path(workdir) / DATASET
    if not (target / f"{DATASET}.train.inter").is_file():
        convert_release(str(Path(data) / "beauty"), str(workdir), DATASET, phase1=str(Path(data) / "phase1"),
                        phase1_as_semantic=phase1_as_semantic)
    return str(workdir)


def run_one(model, config_dict, files, results, dataset=DATASET):
    from dataset_tools.default_data import prepare_inputs
    from recbole_hyperllm.quick_start import run_recbole_hyperllm
    try:
        config_dict = prepare_inputs(model, dataset, files, config_dict)  # the run script's step before training
        run_recbole_hyperllm(model, dataset, files, config_dict, queue=results)
    except Exception as error:  # reported by the parent, never turned into metrics
        results.put({"error": f"{type(error).__name__}: {error}"})


def run_in_subprocess(model, config_dict, files, dataset=DATASET, target=run_one, poll_seconds=5.0):
    """One training run in a fresh process (its own peak memory); errors come back as {'error': ...}.

    A child that dies without a result (killed, out of memory) is reported as an error instead of
    leaving the parent waiting; a parent that is stopped (Ctrl-C, SIGTERM) stops the child too."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(model, config_dict, files, results, dataset))
    process.start()
    try:
        while True:
            try:
                result = results.get(timeout=poll_seconds)
                break
            except queue.Empty:
                if not process.is_alive():
                    result = {"error": f"the run of {model} ended without a result (exit code {process.exitcode}); "
                                       "see its log; running the benchmark again continues it from its -last.pth"}
                    break
        process.join()
        return result
    finally:
        if process.is_alive():
            process.terminate()
            process.join()


def own_run_folder(model, config_dict, key, resume=True):
    """``config_dict`` for benchmark run ``key`` in a checkpoint folder of its own,
    ``<checkpoint_dir>/runs/<key>`` (no run reads another run's checkpoints or records), with the phase-1
    cache left shared under ``<checkpoint_dir>/phase1`` (its files are named by a hash of what they were
    computed from). With ``resume``, a run that was stopped part-way (its folder holds a ``-last.pth`` and
    the benchmark holds no result for it) continues from the newest one instead of starting over."""
    saved = config_dict["checkpoint_dir"]
    folder = Path(saved) / "runs" / file_safe(key)
    config = dict(config_dict, checkpoint_dir=str(folder))
    if reads_key(model, "phase1_cache_dir"):
        config.setdefault("phase1_cache_dir", os.path.join(saved, "phase1"))
    stopped = sorted(folder.glob("*-last.pth"), key=os.path.getmtime) if resume and folder.is_dir() else []
    if stopped and "resume_from" not in config:
        config["resume_from"] = str(stopped[-1])
        print(f"   resuming from {stopped[-1]}", flush=True)
    return config


def file_safe(text):
    """``text`` as a file name: every character but letters, digits, '-' and '_' becomes '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def replace_text(path, text):
    """``path`` rewritten atomically with ``text``: written under a name of this process
    (``dataset_tools.common.replace_when_done``), then renamed, so a crash keeps the previous file and two
    writers never share a partial file."""
    from dataset_tools.common import replace_when_done

    partial = replace_when_done(path)
    try:
        Path(partial).write_text(text, encoding="utf-8")
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def save_results(out, results):
    """A benchmark's JSON ``out`` rewritten atomically (a crash keeps the previous file)."""
    replace_text(out, json.dumps(results, indent=2))


def model_defaults(model):
    """``model``'s YAML defaults in this plugin, merged in RecBole's order (a later property file wins)."""
    import yaml

    from recbole_hyperllm.utils import model_property_files

    merged = {}
    for name in model_property_files(model):
        merged.update(yaml.safe_load(Path(name).read_text()) or {})
    return merged


def reads_key(model, key):
    """Whether one of ``model``'s YAML defaults in this plugin lists ``key``."""
    return key in model_defaults(model)


def run_stamp(script, args_line, commit=None):
    """Command, commit (``commit``, as ``code_commit()`` gave it when the run started; now if not given), date
    (now: the run's end) and machine of a benchmark run, stored with its result by the benchmarks that share
    this module."""
    import torch

    commit = commit or code_commit()
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return {"command": f"python benchmarks/{script} {args_line}".rstrip(), "commit": commit,
            "date": utc_date(),
            "machine": f"{machine(gpu)}, torch {torch.__version__}, {torch.get_num_threads()} torch threads"}  # OMP_NUM_THREADS, which the run's process inherits


def summarise(name, model, config_dict, result):
    if "error" in result:
        return {"error": result["error"], "config": config_dict}
    return {
        "model": model,
        "test": result["test_result"],
        "test_mask": result.get("test_mask"),
        "test_other_mask": result.get("test_result_other_mask"),
        "valid": result["best_valid_result"],
        "best_valid_score": result.get("best_valid_score"),
        "best_epoch": result["best_epoch"],
        "epochs": result["epochs"],
        "epoch_budget": result.get("epoch_budget"),
        "sec_per_epoch": result["sec_per_epoch"],
        "sec_to_best": result.get("sec_to_best"),
        "train_sec_per_epoch": result.get("train_sec_per_epoch"),
        "valid_sec_per_epoch": result.get("valid_sec_per_epoch"),
        "peak_rss_mb": result["peak_rss_mb"],
        "seconds": result["seconds"],
        "phase1": result.get("phase1"),
        "config": config_dict,
    }


def print_table(results):
    header = f"{'model':28s} " + " ".join(f"{m:>17s}" for m in METRICS) + "  best_ep  epochs  s/epoch  RSS MB"
    print(header)
    print("-" * len(header))
    for name, entry in results.items():
        if "error" in entry:
            print(f"{name:28s} ERROR {entry['error']}")
            continue
        paper = PAPER.get(split_label(name), (None,) * 4)
        cells = []
        for metric, reference in zip(METRICS, paper):
            value = entry["test"][metric]
            cells.append(f"{value:.4f} ({reference:.4f})" if reference else f"{value:.4f} (  -   )")
        print(f"{name:28s} " + " ".join(f"{c:>17s}" for c in cells)
              + f"  {entry['best_epoch']!s:>7s}  {entry['epochs']:>6d}  {entry['sec_per_epoch']:7.2f}  {entry['peak_rss_mb']:6.0f}")
    print("(paper's Table 3 in parentheses; test set, best validation epoch)")


def effective_setting(name, entry, key):
    """``key`` as the run used it: its overrides, else the plugin's YAML defaults and the Beauty YAMLs
    (last one wins), else None."""
    import yaml

    from recbole_hyperllm.utils import model_property_files
    model, from_name = split_model(name)
    settings = {**from_name, **entry.get("config", {})}
    if key in settings:
        return settings[key]
    value = None
    for path in model_property_files(model) + config_files(model):
        value = (yaml.safe_load(Path(path).read_text()) or {}).get(key, value)
    return value


def phase1_source(name, entry):
    """Where phase 2's user/item embeddings started: '-' (no semantic part), the released output, or own."""
    variant = effective_setting(name, entry, "variant")
    if not name.startswith("HyperLLM_") or variant in ("Base", "Structural"):
        return "-"
    if effective_setting(name, entry, "semantic_init") == "given":
        return "released 16_50_0.1"
    own = (f"own phase 1 (K={effective_setting(name, entry, 'num_experts')}, "
           f"m1={effective_setting(name, entry, 'meta_margin')})")
    return own + (f" over {entry['semantic_input']}" if entry.get("semantic_input") else "")


def number(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results):
    stamps = [f"- {name}: `{entry['run']['command']}`; commit {entry['run']['commit']}; {entry['run']['date']}; "
              f"{entry['run']['machine']}" for name, entry in results.items() if "run" in entry]
    lines = (["Runs (command, commit, date, machine):", *stamps, ""] if stamps else []) + ["| model | phase-1 output | R@10 | R@20 | N@10 | N@20 | paper R@20 / N@20 | vs paper R@20 / N@20 | other mask R@20 / N@20 | best epoch / epochs | s/epoch (train + valid) | s to best epoch / paper's Time | whole run s | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in results.items():
        if "error" in entry:
            lines.append(f"| {name} | | error: {entry['error']} | | | | | | | | | | | |")
            continue
        test, paper = entry["test"], PAPER.get(split_label(name))
        other = entry.get("test_other_mask") or {}
        paper_cell = f"{paper[1]:.4f} / {paper[3]:.4f}" if paper else "-"
        gap_cell = (f"{100 * (test['recall@20'] / paper[1] - 1):+.1f}% / {100 * (test['ndcg@20'] / paper[3] - 1):+.1f}%"
                    if paper else "-")
        other_cell = (f"{other['recall@20']:.4f} / {other['ndcg@20']:.4f} ({other['test_mask']})" if other else "-")
        lines.append(
            f"| {name} | {phase1_source(name, entry)} | " + " | ".join(f"{test[m]:.4f}" for m in METRICS)
            + f" | {paper_cell} | {gap_cell} | {other_cell} | "
            f"{entry['best_epoch']} / {entry['epochs']} | {number(entry.get('sec_per_epoch'), 2)} "
            f"({number(entry.get('train_sec_per_epoch'), 2)} + {number(entry.get('valid_sec_per_epoch'), 2)}) | "
            f"{number(entry.get('sec_to_best'), 0)} / {PAPER_SECONDS.get(split_label(name), '-')} | "
            f"{number(entry.get('seconds'), 0)} | {number(entry.get('peak_rss_mb'), 0)} |")
    return "\n".join(lines)


BACKBONES = ("HGCF", "HRCF", "HICF", "HGCH", "HyperCL")
SPEED_COLUMNS = (("Base", "{b}"), ("Structural", "HyperLLM_{b}:Structural"), ("Semantic", "HyperLLM_{b}:Semantic"),
                 ("HyperLLM", "HyperLLM_{b}"))


def seconds_per_variant(results, backbone):
    """{variant label: sec_per_epoch} of one run for one backbone (variants that ran)."""
    row = {}
    for label, pattern in SPEED_COLUMNS:
        entry = results.get(pattern.format(b=backbone), {})
        if "sec_per_epoch" in entry:
            row[label] = entry["sec_per_epoch"]
    return row


def added_estimates(row):
    """What the HyperLLM part adds to one epoch, from one run: Structural - Base and HyperLLM - Base
    (both run the tag graph and Eq. 16; the semantic start costs nothing per epoch)."""
    if "Base" not in row:
        return []
    return [row[label] - row["Base"] for label in ("Structural", "HyperLLM") if label in row]


def speed_table(runs):
    """Seconds per epoch (median over ``runs``, each a results dict) per backbone and variant, and
    what HyperLLM adds to the backbone's epoch: the median of every estimate of every run, also as a
    ratio of the same median for HGCF. One machine is noisy; several runs give a steadier median."""
    lines = ["| backbone | " + " | ".join(label for label, _ in SPEED_COLUMNS)
             + " | added by HyperLLM (estimates) | added / HGCF's added |",
             "| --- |" + " --- |" * (len(SPEED_COLUMNS) + 2)]
    rows, added = {}, {}
    for backbone in BACKBONES:
        per_run = [seconds_per_variant(results, backbone) for results in runs]
        rows[backbone] = {label: statistics.median([row[label] for row in per_run if label in row])
                          for label, _ in SPEED_COLUMNS if any(label in row for row in per_run)}
        estimates = [value for row in per_run for value in added_estimates(row)]
        added[backbone] = (statistics.median(estimates), len(estimates)) if estimates else None
    reference = added["HGCF"][0] if added["HGCF"] else None
    for backbone, row in rows.items():
        if not row:
            continue
        cells = [f"{row[label]:.2f}" if label in row else "-" for label, _ in SPEED_COLUMNS]
        cost = added[backbone]
        cells.append("-" if cost is None else f"{cost[0]:+.2f} ({cost[1]})")
        cells.append(f"{cost[0] / reference:.2f}" if cost is not None and reference else "-")
        lines.append(f"| {backbone} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return 0
    if args.speed_markdown:
        runs = [json.loads(Path(path).read_text()) for path in [args.out, *args.speed_run]]
        print(speed_table(runs))
        return 0
    if not (Path(args.data) / "beauty" / "train_matrix.npz").is_file():
        print(f"skipped: the authors' release is not at {args.data} (expected beauty/ and phase1/ there)")
        return 0
    overrides = parse_overrides(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.seed is not None:
        overrides["seed"] = args.seed

    workdir_handle = None
    if args.workdir:
        workdir = args.workdir
        os.makedirs(workdir, exist_ok=True)
    else:
        workdir_handle = tempfile.TemporaryDirectory(prefix="hyperllm-beauty-")
        workdir = workdir_handle.name
    data_path = convert(args.data, workdir, args.phase1_as_semantic)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.is_file() else {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the running child is stopped too
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, variant = split_model(name)
        if name in results and "error" not in results[name] and not args.rerun:
            print(f"== {name}: kept from {out} (use --rerun to run it again)", flush=True)
            continue
        config_dict = {"data_path": data_path, "show_progress": False,
                       "checkpoint_dir": os.path.join(workdir, "saved"), **variant, **overrides}
        print(f"== {name}", flush=True)
        started = code_commit()
        result = run_in_subprocess(model, own_run_folder(model, config_dict, name, resume=not args.rerun),
                                   config_files(model))
        results[name] = summarise(name, model, config_dict, result)
        results[name]["run"] = run_stamp("reproduce_table3.py", " ".join(sys.argv[1:] if argv is None else argv),
                                         started)
        if args.phase1_as_semantic:
            results[name]["semantic_input"] = SEMANTIC_STAND_IN
        save_results(out, results)  # after every model: a crash loses no finished run
    print_table({k: v for k, v in results.items()})
    failed = [k for k, v in results.items() if "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
