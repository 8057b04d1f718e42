"""Every framework over every backbone, on ml-100k (offline) or the authors' Beauty split: HyperLLM's
Table 4 (Base, KAR, RLMRec-Con, RLMRec-Gen, HyperLLM) through the plugin's public API.

    python benchmarks/compare_frameworks.py --dataset ml-100k --seeds 2020,2021,2022 \\
        --out benchmarks/results/frameworks_ml100k.json [--set learning_rate=0.01 ...]
    python benchmarks/compare_frameworks.py --dataset beauty --backbones HGCF,HGCH --seeds 1234 \\
        --out benchmarks/results/frameworks_beauty.json
    python benchmarks/compare_frameworks.py --markdown --out benchmarks/results/frameworks_ml100k.json

Every framework reads the same semantic inputs (``NAME.useremb`` / ``NAME.itememb``):
* ml-100k: for each seed S its own random 8:1:1 split (seed S), tags and summaries from the
  ``metadata`` provider (titles, years, genres; no LLM), all-MiniLM-L6-v2 embeddings, made in
  ``--workdir/split{S}/ml-100k`` by the run scripts' step (``dataset_tools.default_data.prepare_inputs``);
  defaults of ``properties/`` plus ``--set``; every model trains with seed S.
* beauty: the authors' split and tags (``--data``, converted by ``dataset_tools.from_official``), the
  summaries of ``benchmarks/beauty_tag_summaries.py`` (released tag names; users from training items)
  through MiniLM; the backbone's Beauty hyper-parameters (``properties/beauty/<Backbone>.yaml``) for Base,
  KAR and RLMRec, ``properties/beauty/HyperLLM_<Backbone>.yaml`` with ``semantic_init: moe`` (this
  project's phase 1 over the same embeddings) for HyperLLM. Skips with exit 0 without the release.

Each run is its own process (its own peak memory). ``--out`` (JSON, one entry per ``<model>@<seed>``: test
R@10/R@20/N@10/N@20, best epoch, epochs, seconds per epoch, seconds of training + validation up to the end
of the best epoch (Table 4's "Time"), phase-1 record, peak RSS, and the command, commit, date and machine
of the run) is rewritten after every run, so a stopped benchmark resumes where it stopped; the same name
with ``.md`` holds the table and that provenance. Each run keeps its checkpoints in
``<checkpoint_dir>/runs/<model>_<seed>``: a run stopped part-way continues from its ``-last.pth`` when
the benchmark is run again, and ``--extend --set epochs=N`` continues the runs that ended at their budget.

``--choose kd_weight=0.01,0.001`` picks a setting per cell on validation: every cell whose model reads the
key (its YAML defaults list it) trains once per value, each as its own entry ``<model>[key=value]@<seed>``,
and the cell is the one with the best validation score (``valid_metric``); the test set never chooses. The
table says which value each cell took.
"""
import argparse
import collections
import itertools
import json
import os
import signal
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reproduce_table3 import (DATASET, METRICS, code_commit, convert, model_defaults, own_run_folder,  # noqa: E402
                              parse_overrides, parse_value, reads_key, run_in_subprocess, run_stamp, save_results,
                              summarise)

BACKBONES = ("HGCF", "HRCF", "HICF", "HGCH", "HyperCL")
FRAMEWORKS = ("Base", "KAR", "RLMRecCon", "RLMRecGen", "HyperLLM")
# HyperLLM's Table 4, Beauty column: (R@20, N@20) per backbone and framework.
PAPER_BEAUTY = {
    "HGCF": {"Base": (0.1604, 0.0771), "KAR": (0.1565, 0.0715), "RLMRecCon": (0.1619, 0.0773),
             "RLMRecGen": (0.1610, 0.0756), "HyperLLM": (0.1889, 0.0893)},
    "HRCF": {"Base": (0.1607, 0.0768), "KAR": (0.1443, 0.0638), "RLMRecCon": (0.1606, 0.0772),
             "RLMRecGen": (0.1615, 0.0765), "HyperLLM": (0.1904, 0.0895)},
    "HICF": {"Base": (0.1685, 0.0820), "KAR": (0.1611, 0.0761), "RLMRecCon": (0.1750, 0.0843),
             "RLMRecGen": (0.1673, 0.0808), "HyperLLM": (0.1978, 0.0956)},
    "HGCH": {"Base": (0.1727, 0.0801), "KAR": (0.1202, 0.0550), "RLMRecCon": (0.1722, 0.0817),
             "RLMRecGen": (0.1713, 0.0792), "HyperLLM": (0.1861, 0.0872)},
    "HyperCL": {"Base": (0.1659, 0.0772), "KAR": (0.1211, 0.0552), "RLMRecCon": (0.1685, 0.0783),
                "RLMRecGen": (0.1628, 0.0760), "HyperLLM": (0.1803, 0.0827)},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["ml-100k", "beauty"], default="ml-100k")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--seeds", default="2020,2021,2022", help="ml-100k: split and training seeds; beauty: training")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hyperllm-official"))
    parser.add_argument("--workdir", default="/tmp/hyperllm-frameworks")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "frameworks_ml100k.json"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra RecBole config")
    parser.add_argument("--rerun", action="store_true", help="run again what --out already holds")
    parser.add_argument("--extend", action="store_true",
                        help="continue the runs of --out that ended at their epoch budget (never stopped early) "
                             "from their -last.pth, up to the --set epochs given now")
    parser.add_argument("--import-run", action="append", default=[], metavar="KEY=RUNS_JSON#NAME",
                        help="fill cell KEY (e.g. HyperLLM_HGCF@1234) from run NAME of a figures.py runs.json "
                             "(its kept record); the run's model, dataset, seed and settings must be the cell's")
    parser.add_argument("--merge", action="append", default=[], metavar="JSON",
                        help="copy the finished cells of another --out of this script (e.g. one cell per process, or "
                             "cells run on another machine) into --out, each with its own run stamp; a finished cell "
                             "--out already holds is kept, unless the merged one continues its run (--extend)")
    parser.add_argument("--choose", action="append", default=[], metavar="KEY=V1,V2",
                        help="train each cell whose model reads KEY once per value and keep the one with the best "
                             "validation score (see the module docstring)")
    parser.add_argument("--no-train", action="store_true",
                        help="train nothing: assemble --out from what it holds and --merge/--import-run bring "
                             "(--choose cells whose candidates are all there are chosen), then write the table")
    parser.add_argument("--markdown", action="store_true", help="only (re)write and print the table of --out")
    return parser.parse_args(argv)


def model_name(framework, backbone):
    return backbone if framework == "Base" else f"{framework}_{backbone}"


def beauty_files(framework, backbone):
    own = "HyperLLM_" + backbone if framework == "HyperLLM" else backbone
    return [str(ROOT / "properties" / "beauty" / "dataset.yaml"), str(ROOT / "properties" / "beauty" / f"{own}.yaml")]


def beauty_inputs(data, workdir):
    """The converted release with the tag-name summaries' MiniLM embeddings (made once)."""
    from beauty_tag_summaries import build_inputs

    data_path = convert(data, workdir)
    folder = os.path.join(data_path, DATASET)
    if not os.path.isfile(os.path.join(folder, f"{DATASET}.useremb")):
        print("inputs:", json.dumps(build_inputs(folder)), flush=True)
    return data_path


def plan(args):
    """[(key, model, dataset, config files, config dict)] of every run asked for."""
    overrides = parse_overrides(args.set)
    backbones = [b for b in args.backbones.split(",") if b]
    frameworks = [f for f in args.frameworks.split(",") if f]
    runs = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        if args.dataset == "ml-100k":
            root = os.path.join(args.workdir, f"split{seed}")
            base = {"data_path": root, "ml100k_split_seed": seed, "seed": seed, "checkpoint_dir": os.path.join(root, "saved")}
        else:
            root = beauty_inputs(args.data, args.workdir)
            base = {"data_path": root, "seed": seed, "checkpoint_dir": os.path.join(args.workdir, "saved")}
        for backbone in backbones:
            for framework in frameworks:
                name = model_name(framework, backbone)
                config = {**base, "show_progress": False, **overrides}
                if args.dataset == "ml-100k":
                    runs.append((f"{name}@{seed}", name, "ml-100k", [], config))
                else:
                    if framework == "HyperLLM":
                        config["semantic_init"] = "moe"
                    runs.append((f"{name}@{seed}", name, DATASET, beauty_files(framework, backbone), config))
    return runs


def ended_at_budget(entry):
    """Whether a run's entry ran all its epochs (early stopping never ended it): its best epoch may lie
    beyond its budget, so the comparison asks for it to continue (``--extend``). The budget is the one the
    run recorded (``epoch_budget``, from its own config); entries written before runs recorded it fall back
    to ``--set epochs`` and then to the model's YAML default (e.g. Beauty's 500)."""
    budget = entry.get("epoch_budget") or entry.get("config", {}).get("epochs")
    if budget is None and entry.get("model"):
        budget = model_defaults(entry["model"]).get("epochs")
    return "error" not in entry and budget is not None and (entry.get("epochs") or 0) >= budget


# The settings a run record keeps (quick_start.RECORD_KEYS) and their values when a config leaves them out.
RECORD_DEFAULTS = {"variant": "HyperLLM", "ablation": "none", "semantic_init": "moe", "cl_scope": "all"}


def imported_entry(key, model, dataset_name, config, source):
    """Cell ``key`` from run NAME of a figures.py ``runs.json`` (``source`` = 'RUNS_JSON#NAME'): the same
    summary as a run made here, from the run's kept record, with that run's command, commit, date and
    machine. SystemExit (naming the field) when the run is not this cell's model, dataset, seed or settings."""
    runs_file, _, name = source.partition("#")
    runs = json.loads(Path(runs_file).read_text())
    if name not in runs or not runs[name].get("kept_record"):
        raise SystemExit(f"--import-run {key}={source}: {runs_file} has no finished run {name!r}")
    run = runs[name]
    kept = Path(runs_file).parent / run["kept_record"]
    record = json.loads(kept.read_text())
    wanted = {"model": model, "dataset": dataset_name, "seed": config["seed"]}
    if model.startswith("HyperLLM_"):
        wanted.update({k: config.get(k, default) for k, default in RECORD_DEFAULTS.items()})
    for field, value in wanted.items():
        if record["settings"].get(field) != value:
            raise SystemExit(f"--import-run {key}={source}: its {field} is {record['settings'].get(field)!r}, "
                             f"the cell's {value!r}")
    result = dict(record, record=str(kept))
    entry = summarise(key, model, config, result)
    entry.update(dataset=dataset_name, imported_from=source,
                 run={k: run[k] for k in ("command", "commit", "date", "machine")})
    return entry


def merge_cells(results, source, dataset_name):
    """The finished cells of ``source`` (another output of this script) added to ``results``; returns their keys.
    SystemExit when a cell of ``source`` is of another dataset or has no run stamp (it was not made here)."""
    merged = []
    for key, cell in json.loads(Path(source).read_text()).items():
        if "error" in cell:
            continue
        if cell.get("dataset") != dataset_name:
            reason = f"its dataset is {cell.get('dataset')!r}, this command's {dataset_name!r}"
        elif not cell.get("run"):
            reason = "it has no run stamp"
        else:
            reason = None
        if reason:
            raise SystemExit(f"--merge {source}: cell {key} cannot be merged ({reason})")
        if key in results and "error" not in results[key] and not extends(cell, results[key]):
            print(f"== {key}: kept from --out (--merge {source} has it too)", flush=True)
            continue
        results[key] = dict(cell, merged_from=str(source))
        merged.append(key)
    return merged


def extends(cell, kept):
    """Whether ``cell`` is ``kept``'s run continued (``--extend``): the same run folder, trained to more epochs.
    Such a cell replaces the one ``--out`` holds when merged; any other cell ``--out`` holds is kept."""
    folder = (cell.get("config") or {}).get("checkpoint_dir")
    return (folder is not None and folder == (kept.get("config") or {}).get("checkpoint_dir")
            and cell.get("epochs", 0) > kept.get("epochs", 0))


def parse_choices(items):
    """{key: [values]} of the --choose arguments; SystemExit naming a malformed one."""
    choices = {}
    for item in items:
        key, _, values = item.partition("=")
        parsed = [parse_value(v) for v in values.split(",") if v]
        if not key or len(parsed) < 2:
            raise SystemExit(f"--choose {item!r}: write KEY=V1,V2 with at least two values")
        choices[key] = parsed
    return choices


def candidates(key, model, config, choices):
    """[(entry key, config)] of the settings cell ``key`` chooses among; [] when its model reads none of the
    chosen keys."""
    read = {k: v for k, v in choices.items() if reads_key(model, k)}
    if not read:
        return []
    name, _, seed = key.rpartition("@")
    out = []
    for values in itertools.product(*read.values()):
        setting = dict(zip(read, values))
        label = ",".join(f"{k}={v}" for k, v in setting.items())
        out.append((f"{name}[{label}]@{seed}", dict(config, **setting)))
    return out


# Config keys that name where a run kept its files, not how it trained.
PLACE_KEYS = ("data_path", "checkpoint_dir", "phase1_cache_dir", "resume_from", "show_progress")


def training_settings(config, leave_out=()):
    """A run's config without the keys that only place its files (and without ``leave_out``)."""
    return {k: v for k, v in config.items() if k not in PLACE_KEYS and k not in leave_out}


def reuse_default_cell(results, key, model, options, choices):
    """The candidate of ``options`` whose setting is ``model``'s YAML default, filled from the cell ``key`` that
    already trained with that default (before ``--choose`` was given), instead of training the same run again.
    Only when that cell finished, was not itself chosen, and trained with the candidate's settings (the same
    ``--set`` values and epoch budget; the chosen keys left at their defaults). Returns the key filled, or None."""
    plain = results.get(key)
    if not plain or "error" in plain or plain.get("chosen") or "config" not in plain:
        return None
    defaults = model_defaults(model)
    for run_key, run_config in options:
        setting = {k: run_config[k] for k in choices if k in defaults}  # the keys this cell chooses among
        if run_key in results or any(defaults[k] != v or k in plain["config"] for k, v in setting.items()):
            continue
        if training_settings(plain["config"]) == training_settings(run_config, leave_out=setting):
            results[run_key] = dict(plain, reused_from=key)
            return run_key
    return None


def setting_of(entry_key):
    """'key=value' of a --choose entry key '<model>[key=value]@<seed>'."""
    return entry_key[entry_key.index("[") + 1: entry_key.index("]")]


def summed_valid_metric():
    """The metrics properties/overall.yaml's valid_metric sums (the paper's model selection: four of them)."""
    import yaml

    from recbole_hyperllm.utils import PROPERTIES

    overall = yaml.safe_load((PROPERTIES / "overall.yaml").read_text())
    return [m.strip().lower() for m in overall["valid_metric"].split("+")]


def validation_score(entry):
    """The entry's best validation score (``valid_metric``); for a run recorded before the score was kept, the
    sum of its recorded best-epoch validation metrics when its config left ``valid_metric`` at the summed
    default (each metric is rounded to 4 places, so the sum is within 2e-4). None when neither is known."""
    if entry.get("best_valid_score") is not None:
        return entry["best_valid_score"]
    valid, summed = entry.get("valid") or {}, summed_valid_metric()
    if "valid_metric" in entry.get("config", {}) or any(m not in valid for m in summed):
        return None
    return round(sum(valid[m] for m in summed), 4)


def chosen_entry(results, options):
    """The entry of the candidate with the best validation score, with every candidate's score beside it; None
    while a candidate is missing or failed."""
    runs = [(k, results.get(k)) for k, _ in options]
    if any(entry is None or "error" in entry or validation_score(entry) is None for _, entry in runs):
        return None
    best_key, best = max(runs, key=lambda kv: validation_score(kv[1]))
    return dict(best, chosen=setting_of(best_key),
                chosen_among={k: validation_score(e) for k, e in runs})


def mean_std(values):
    """'mean ± std' over seeds, or the value of a single seed."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


UNSET = "<not set>"  # a key a cell's run was not given


def own_settings(results):
    """{cell: the settings its run was given that differ from the usual value among the cells of its seed} (such
    as one cell's ``--set max_norm=0`` or an ``--extend``ed budget), so the table says which cells differ and how.
    Usual: the most common value of a key among the seed's cells (a key a cell does not set counts as unset). A
    ``--choose`` cell's chosen key is left to its own line, the seed to the cell's name."""
    cells = {key: (e.get("config", {}).get("seed"), training_settings(e.get("config", {}), leave_out=("seed",)))
             for key, e in results.items() if "[" not in key}

    def written(value):  # a number by its value: a YAML's 1 and a --set 1.0 are one setting
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        return json.dumps(value, sort_keys=True, default=str)

    usual = {}
    for seed in {seed for seed, _ in cells.values()}:
        group = [settings for s, settings in cells.values() if s == seed]
        for name in set().union(*group):
            counts = collections.Counter(written(settings.get(name, UNSET)) for settings in group)
            usual[seed, name] = max(sorted(counts), key=counts.get)  # ties: the first in sorted order
    own = {}
    for key, (seed, settings) in cells.items():
        chosen = results[key].get("chosen", "").partition("=")[0]
        own[key] = {k: v for k, v in settings.items() if written(v) != usual[seed, k] and k != chosen}
    return own


def provenance(results):
    """The commands, commits, dates and machines of the runs in a table."""
    stamps = [e.get("run") for e in results.values() if e.get("run")]
    lines = []
    for field in ("command", "commit", "machine"):
        values = sorted({s[field] for s in stamps})
        lines.append(f"{field.capitalize()}: " + "; ".join(f"`{v}`" if field == "command" else v for v in values))
    dates = sorted(s["date"] for s in stamps)
    lines.append(f"Runs: {len(stamps)}, {dates[0]} to {dates[-1]}" if dates else "Runs: none")
    lines += [f"{key}: imported from run `{e['imported_from']}` (`--import-run`)"
              for key, e in sorted(results.items()) if e.get("imported_from")]
    lines += [f"{key}: merged from `{e['merged_from']}` (`--merge`), run `{e['run']['command']}`"
              for key, e in sorted(results.items()) if e.get("merged_from")]
    lines += [f"{key}: the cell {e['reused_from']} as it was trained with the default setting (`--choose`)"
              for key, e in sorted(results.items()) if e.get("reused_from")]
    lines += [f"{key}: trained with " + ", ".join(f"{k}={v}" for k, v in sorted(own.items()))
              + " (other cells of its seed: not)" for key, own in sorted(own_settings(results).items()) if own]
    summed = "*"  # a score summed from the run's recorded validation metrics (validation_score)
    was_summed = {k for e in results.values() if e.get("chosen") for k in e["chosen_among"]
                  if (results.get(k) or {}).get("best_valid_score") is None}
    lines += [f"{key}: {e['chosen']} chosen on validation (`--choose`; scores " + ", ".join(
              f"{setting_of(k)}: {v:.4f}" + (summed if k in was_summed else "")
              for k, v in e["chosen_among"].items()) + ")"
              for key, e in sorted(results.items()) if e.get("chosen")]
    if was_summed:
        lines.append(f"{summed} the sum of that run's recorded best-epoch validation metrics (the summed "
                     "valid_metric; the run predates the kept score)")
    return "  \n".join(lines)


GPU_MARK = "†"  # a time or memory figure from runs on a GPU machine only


def on_gpu(entry):
    """Whether the run's stamp names a GPU machine."""
    machine = (entry.get("run") or {}).get("machine", "")
    return "NVIDIA" in machine or "GPU" in machine.replace("no GPU", "")


def timing_runs(runs):
    """(runs, mark): the runs whose seconds and memory a row reports. Time and memory are comparable only on
    one kind of machine, so a row's figures come from its CPU runs; from its GPU runs, marked, when it has no
    CPU run."""
    cpu = [e for e in runs if not on_gpu(e)]
    return (cpu, "") if cpu else (runs, GPU_MARK)


def markdown_table(results, paper=None):
    """One row per (backbone, framework): mean +- std over the seeds that ran, change of R@20 / N@20 against
    the same backbone's Base, best epochs, median s/epoch, median s to the best epoch, peak RSS (the last three
    over the row's CPU runs: ``timing_runs``)."""
    groups = {}
    for key, entry in results.items():
        groups.setdefault(key.rpartition("@")[0], []).append(entry)
    header = ("| backbone | framework | R@10 | R@20 | N@10 | N@20 | vs Base R@20 / N@20 | "
              + ("paper vs Base R@20 / N@20 | " if paper else "")
              + "seeds | best epoch / epochs | s/epoch | s to best | peak RSS MB |")
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    if any(on_gpu(e) for e in results.values()):
        lines.insert(0, f"s/epoch, s to best and peak RSS: median (max) over a row's runs on a CPU machine; "
                        f"{GPU_MARK}: from its GPU runs, which a row has only. Accuracy columns: every seed.\n")
    if any(e.get("chosen") for e in results.values()):
        lines.insert(0, "seeds: 'k chosen': k of the row's seeds took the setting chosen on validation "
                        "(`--choose`, named below the table); its other seeds ran with the YAML default.\n")
    for backbone in BACKBONES:
        base_runs = [e for e in groups.get(backbone, []) if "error" not in e]
        for framework in FRAMEWORKS:
            runs = groups.get(model_name(framework, backbone))
            if not runs:
                continue
            failed = [e for e in runs if "error" in e]
            ok = [e for e in runs if "error" not in e]
            if not ok:
                lines.append(f"| {backbone} | {framework} | " + "error: " + failed[0]["error"][:120].replace("|", "/")
                             + " |" * (header.count("|") - 3))
                continue
            cells = [mean_std([e["test"][m] for e in ok]) for m in METRICS]
            change = "-"
            if base_runs and framework != "Base":
                r = statistics.mean(e["test"]["recall@20"] for e in ok) / statistics.mean(e["test"]["recall@20"] for e in base_runs)
                n = statistics.mean(e["test"]["ndcg@20"] for e in ok) / statistics.mean(e["test"]["ndcg@20"] for e in base_runs)
                change = f"{100 * (r - 1):+.1f}% / {100 * (n - 1):+.1f}%"
            row = [backbone, framework, *cells, change]
            if paper:
                ref, ref_base = paper.get(backbone, {}).get(framework), paper.get(backbone, {}).get("Base")
                row.append("-" if framework == "Base" or not ref else
                           f"{100 * (ref[0] / ref_base[0] - 1):+.1f}% / {100 * (ref[1] / ref_base[1] - 1):+.1f}%")
            chosen = [e for e in ok if e.get("chosen")]
            row.append(f"{len(ok)}" + (f" ({len(failed)} failed)" if failed else "")
                       + (f", {len(chosen)} chosen" if chosen else ""))
            row.append(", ".join(f"{e['best_epoch']} / {e['epochs']}" for e in ok))
            timed, mark = timing_runs(ok)
            row.append(f"{statistics.median(e['sec_per_epoch'] for e in timed):.2f}{mark}")
            to_best = [e["sec_to_best"] for e in timed if e.get("sec_to_best") is not None]
            row.append(f"{statistics.median(to_best):.0f}{mark}" if to_best else "-")
            row.append(f"{max(e['peak_rss_mb'] for e in timed):.0f}{mark}")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def ordering_check(results, paper):
    """Per backbone: do the frameworks measured here (Base included) rank by test R@20 (mean over seeds) as in
    the paper's Table 4? Counts the pairs ordered alike and names the others; a backbone with fewer than two
    measured frameworks is skipped."""
    lines = []
    for backbone in BACKBONES:
        here = {}
        for framework in FRAMEWORKS:
            runs = [e for k, e in results.items()
                    if k.rpartition("@")[0] == model_name(framework, backbone) and "error" not in e]
            if runs and framework in paper.get(backbone, {}):
                here[framework] = statistics.mean(e["test"]["recall@20"] for e in runs)
        if len(here) < 2:
            continue
        theirs = {f: paper[backbone][f][0] for f in here}
        pairs = [(a, b) for i, a in enumerate(here) for b in list(here)[i + 1:]]
        differ = [(a, b) for a, b in pairs if (here[a] - here[b]) * (theirs[a] - theirs[b]) < 0]
        order = lambda values: " > ".join(sorted(values, key=values.get, reverse=True))  # noqa: E731
        lines.append(f"- {backbone}: here {order(here)}; the paper {order(theirs)}: "
                     f"{len(pairs) - len(differ)} of {len(pairs)} pairs ordered alike"
                     + (" (not: " + ", ".join(f"{a} vs {b}" for a, b in differ) + ")" if differ else ""))
    return ["Ordering by test R@20 against the paper's Table 4 (computed from the rows above):", "", *lines] if lines else []


def write_markdown(out, results):
    """The table beside ``out`` (``.md``): provenance, then the table (with Table 4's changes and the ordering
    check for Beauty runs)."""
    beauty = any(e.get("dataset") == DATASET for e in results.values())
    text = provenance(results) + "\n\n" + markdown_table(results, PAPER_BEAUTY if beauty else None) + "\n"
    ordering = ordering_check(results, PAPER_BEAUTY) if beauty else []
    if ordering:
        text += "\n" + "\n".join(ordering) + "\n"
    Path(out).with_suffix(".md").write_text(text)
    return text


def train_cell(args, args_line, out, results, key, model, dataset_name, files, config):
    """Entry ``key`` of ``results`` trained (or kept, or extended, as the arguments say) and saved to ``out``."""
    extend = args.extend and key in results and ended_at_budget(results[key])
    if key in results and "error" not in results[key] and not args.rerun and not extend:
        print(f"== {key}: kept from {out}", flush=True)
        return
    if args.no_train:
        print(f"== {key}: not trained (--no-train)", flush=True)
        return
    config = own_run_folder(model, config, key, resume=not args.rerun)
    if extend and (config["epochs"] <= results[key]["epochs"] or "resume_from" not in config):
        print(f"== {key}: not extended (" + ("no -last.pth in " + config["checkpoint_dir"] if "resume_from" not in
              config else f"--set epochs={config['epochs']} is not above its {results[key]['epochs']}") + ")")
        return
    print(f"== {key}" + (f": extended to {config['epochs']} epochs" if extend else ""), flush=True)
    started = code_commit()
    results[key] = summarise(key, model, config, run_in_subprocess(model, config, files, dataset=dataset_name))
    results[key].update(dataset=dataset_name, run=run_stamp("compare_frameworks.py", args_line, started))
    save_results(out, results)
    entry = results[key]
    print(entry.get("error") or {m: entry["test"][m] for m in METRICS}, flush=True)
    write_markdown(out, results)


def main(argv=None):
    args = parse_args(argv)
    choices = parse_choices(args.choose)  # a malformed one ends the run before anything is read or trained
    args_line = " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    if args.markdown:
        print(write_markdown(out, results))
        return 0
    if args.dataset == "beauty" and not (Path(args.data) / "beauty" / "train_matrix.npz").is_file():
        print(f"skipped: the authors' release is not at {args.data}")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the running child is stopped too
    dataset_name = DATASET if args.dataset == "beauty" else "ml-100k"
    for source in args.merge:
        for key in merge_cells(results, source, dataset_name):
            print(f"== {key}: merged from {source}", flush=True)
        save_results(out, results)
    imports = dict(item.split("=", 1) for item in args.import_run)
    planned = plan(args)
    stray = sorted(set(imports) - {run[0] for run in planned})
    if stray:
        raise SystemExit(f"--import-run {stray[0]}: not a cell of this command's --backbones/--frameworks/--seeds")
    for key, model, dataset_name, files, config in planned:
        if key in imports:
            results[key] = imported_entry(key, model, dataset_name, config, imports[key])
            save_results(out, results)
            print(f"== {key}: imported from {imports[key]}", flush=True)
            continue
        options = candidates(key, model, config, choices)
        reused = reuse_default_cell(results, key, model, options, choices) if options else None
        if reused:
            save_results(out, results)
            print(f"== {reused}: the cell {key} trained with this default setting (reused, not trained again)",
                  flush=True)
        for run_key, run_config in options or [(key, config)]:
            train_cell(args, args_line, out, results, run_key, model, dataset_name, files, run_config)
        chosen = chosen_entry(results, options) if options else None
        if chosen is not None:
            results[key] = chosen
            save_results(out, results)
            write_markdown(out, results)
            print(f"== {key}: {chosen['chosen']} chosen on validation", flush=True)
    print(write_markdown(out, results))
    return 1 if any("error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
