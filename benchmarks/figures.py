"""The paper's Figures 2-5 for one dataset: trains the runs each figure needs (resuming: a run whose record
exists is not trained again) and draws them with ``python -m recbole_hyperllm.analysis``.

    python benchmarks/figures.py --dataset ml-100k [--set epochs=150 ...] [--workdir /tmp/figures] \\
        [--out benchmarks/results/figures_ml100k]
    python benchmarks/figures.py --dataset beauty --figures groups,convergence,dendrogram \\
        [--data ../shared/data/hyperllm-official] --out benchmarks/results/figures_beauty

Beauty: the authors' split and tags (converted with ``dataset_tools.from_official``), each model with its
Beauty hyper-parameters (``properties/beauty``). ``--semantic released`` (default): HyperLLM from the
released phase-1 output, as Table 3; the figures there are Figure 4 (groups) and a two-line Figure 3 (Base
and HyperLLM: w/o Meta needs semantic inputs the release does not have) for HGCF, and Figure 5 for HRCF.
``--semantic tag-summaries``: every semantic run reads the MiniLM embeddings of the tag-name summaries
(``benchmarks/beauty_tag_summaries.py``, made once in ``--workdir``, as ``compare_frameworks.py --dataset
beauty``) and HyperLLM runs this project's phase 1 on them (``semantic_init: moe``), so all four figures can
be drawn, Figure 2 and the three-line Figure 3 included. Skips with exit 0 without the release.

Runs (seed 2020, the plugin's defaults plus ``--set``; ml-100k's inputs made offline by the run scripts' step):
Figure 2 (ablation, HGCF): HyperLLM, w/o Meta, only Semantic, w/o Semantic (variant Structural), w/o
Structural (variant Semantic), w/o CL, and Base (HGCF); Figure 3 (convergence): Base, w/o Meta, HyperLLM over
HGCF; Figure 4 (groups): HGCF vs HyperLLM_HGCF (``--backbone`` puts another backbone in HGCF's place in
Figures 2-4); Figure 5 (dendrogram): HRCF vs HyperLLM_HRCF. Every run is
its own process. ``--out`` gets the four PNG/JSON pairs and ``runs.json`` (each run's record path, metrics,
command, commit, date and machine). ``--reuse NAME=RECORD`` takes a run another command already trained (a
``compare_frameworks.py`` cell, say) in place of NAME, after checking it trained the same configuration on the
same input files.
"""
import argparse
import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RUNS = {  # name -> (model, settings)
    "Base": ("HGCF", {}),
    "HyperLLM": ("HyperLLM_HGCF", {}),
    "w/o Meta": ("HyperLLM_HGCF", {"ablation": "wo_meta"}),
    "only Semantic": ("HyperLLM_HGCF", {"ablation": "only_semantic"}),
    "w/o Semantic": ("HyperLLM_HGCF", {"variant": "Structural"}),
    "w/o Structural": ("HyperLLM_HGCF", {"variant": "Semantic"}),
    "w/o CL": ("HyperLLM_HGCF", {"ablation": "wo_cl"}),
    "HRCF": ("HRCF", {}),
    "HyperLLM_HRCF": ("HyperLLM_HRCF", {}),
}
FIGURES = {
    "ablation": ["HyperLLM", "w/o Meta", "only Semantic", "w/o Semantic", "w/o Structural", "w/o CL", "Base"],
    "convergence": ["Base", "w/o Meta", "HyperLLM"],
    "groups": ["Base", "HyperLLM"],
    "dendrogram": ["HRCF", "HyperLLM_HRCF"],
}


BEAUTY_FIGURES = {"groups": ["Base", "HyperLLM"], "convergence": ["Base", "HyperLLM"],
                  "dendrogram": ["HRCF", "HyperLLM_HRCF"]}


def run_settings(name, own_phase1=False, backbone="HGCF"):
    """(model, settings) of run ``name``; ``own_phase1``: HyperLLM runs train phase 1 on the semantic inputs;
    ``backbone``: the backbone of the HGCF runs (Figures 2-4; Figure 5's runs name theirs)."""
    model, settings = RUNS[name]
    if model == "HGCF" or model.endswith("_HGCF"):
        model = model[: -len("HGCF")] + backbone
    if own_phase1 and model.startswith("HyperLLM_"):
        settings = dict(settings, semantic_init="moe")
    return model, settings


def train(name, dataset, workdir, extra, files=None, own_phase1=False, backbone="HGCF"):
    """One run in its own process (the run script's API); its record path or the divergence."""
    from reproduce_table3 import own_run_folder, run_in_subprocess

    model, settings = run_settings(name, own_phase1, backbone)
    config = own_run_folder(model, dict(extra, **settings, data_path=workdir, checkpoint_dir=os.path.join(
        workdir, "saved"), show_progress=False), f"{model}-{name}")
    result = run_in_subprocess(model, config, files(model) if files else None, dataset=dataset, target=_run)
    return {"model": model, "settings": settings, **result}


def _run(model, config, files, results, dataset):
    from dataset_tools.default_data import prepare_inputs
    from recbole_hyperllm.errors import DivergenceError
    from recbole_hyperllm.quick_start import run_recbole_hyperllm

    overrides = prepare_inputs(model, dataset, files, config)
    try:
        result = run_recbole_hyperllm(model, dataset, files, overrides)
        results.put({"record": result["record"], "test_result": result["test_result"],
                     "best_epoch": result["best_epoch"], "epochs": result["epochs"]})
    except DivergenceError as error:
        records = sorted(Path(config["checkpoint_dir"]).glob(f"{model}-*-result.json"), key=os.path.getmtime)
        results.put({"diverged": str(error), "record": str(records[-1]) if records else None})


def reuse_run(name, record, dataset, workdir, extra, files=None, own_phase1=False, backbone="HGCF"):
    """Run ``name``'s entry from a run another command already trained (its ``-result.json`` record, e.g. a
    cell of ``compare_frameworks.py``), so the same training is not repeated. Only when that run trained what
    figures.py would train now: the same model, every key of the final configuration equal except the ones
    that only place files (``PLACE_KEYS``), and byte-identical input files in the two dataset folders.
    Raises SystemExit naming the first difference."""
    import torch
    from compare_frameworks import PLACE_KEYS
    from dataset_tools.common import file_fingerprint
    from dataset_tools.default_data import prepare_inputs
    from recbole_hyperllm.quick_start import create_config

    if not os.path.isfile(record):
        raise SystemExit(f"--reuse {name}={record}: no such record (a run's <checkpoint>-result.json)")
    kept = json.loads(Path(record).read_text())
    model, settings = run_settings(name, own_phase1, backbone)
    if kept.get("settings", {}).get("model") != model or not kept.get("test_result"):
        raise SystemExit(f"--reuse {name}={record}: a finished {model} run is needed, the record is of "
                         f"{kept.get('settings', {}).get('model')} ({'finished' if kept.get('test_result') else 'unfinished'})")
    config_files = files(model) if files else None
    overrides = prepare_inputs(model, dataset, config_files, dict(extra, **settings, data_path=workdir, show_progress=False))
    would = create_config(model, dataset, config_files, overrides).final_config_dict
    trained = torch.load(kept["checkpoint"], map_location="cpu", weights_only=False)["config"].final_config_dict
    differ = [k for k in sorted(set(would) | set(trained), key=str) if k not in PLACE_KEYS
              and json.dumps(would.get(k), default=str) != json.dumps(trained.get(k), default=str)]
    if differ:
        raise SystemExit(f"--reuse {name}={record}: that run trained with other settings than figures.py gives "
                         f"{name} now: " + ", ".join(f"{k}={trained.get(k)!r} (now {would.get(k)!r})" for k in differ[:5]))

    def digests(folder):
        return {f.name: file_fingerprint(f) for f in sorted(Path(folder).iterdir())
                if f.is_file()} if os.path.isdir(folder) else None
    ours, theirs = (digests(c["data_path"]) for c in (would, trained))  # RecBole's data_path: <data_path>/<dataset>
    if theirs is None or ours != theirs:
        changed = sorted(set(ours or {}) ^ set(theirs or {}) | {k for k in set(ours or {}) & set(theirs or {})
                                                                if ours[k] != theirs[k]})
        raise SystemExit(f"--reuse {name}={record}: its inputs ({trained['data_path']}) are "
                         + ("gone" if theirs is None else f"not the ones here (differ: {', '.join(changed[:5])})"))
    return {"model": model, "settings": settings, "record": record, "test_result": kept["test_result"],
            "best_epoch": kept.get("best_epoch"), "epochs": kept.get("epochs"), "reused_record": record}


def keep_record(record, out, name):
    """A copy of run ``name``'s record under ``out``/records with its validation history folded in (from the
    progress file), so Figures 2 and 3 can be drawn from the repository alone: after /tmp is gone, or from
    runs made on another machine. Returns its path relative to ``out``."""
    from dataset_tools.pipeline import write_json
    from recbole_hyperllm import analysis
    from reproduce_table3 import file_safe

    portable = {k: v for k, v in analysis.read_run(record).items() if k != "progress_file"}
    relative = Path("records") / (file_safe(name) + ".json")
    write_json(str(Path(out) / relative), portable)
    return str(relative)


def unfinished_record(name, workdir, out, own_phase1=False, backbone="HGCF"):
    """(label, path) of a portable copy of run ``name``'s newest progress file (``-last.pth`` in its own run
    folder under ``workdir``), kept under ``out``/records as ``<name>-unfinished.json``; the label says how
    far it got. None when the run has no progress file there."""
    from reproduce_table3 import file_safe

    model, _ = run_settings(name, own_phase1, backbone)
    folder = Path(workdir) / "saved" / "runs" / file_safe(f"{model}-{name}")
    progress = sorted(folder.glob("*-last.pth"), key=os.path.getmtime) if folder.is_dir() else []
    if not progress:
        return None
    path = Path(out) / keep_record(str(progress[-1]), out, f"{name}-unfinished")
    epochs = len(json.loads(path.read_text()).get("valid_results") or [])
    return f"{name} (unfinished, {epochs} epochs)", str(path)


def history_record(run, out):
    """The record Figures 2 and 3 read for a run: its own while it exists, else the copy kept under ``out``."""
    if run.get("record") and os.path.isfile(run["record"]):
        return run["record"]
    kept = Path(out) / run["kept_record"] if run.get("kept_record") else None
    return str(kept) if kept and kept.is_file() else None


def ran_out_of_epochs(entry, extra):
    """Whether a recorded run ended at its epoch budget, not by early stopping (its best epoch is within
    ``stopping_step`` of its last), and ``extra``'s ``epochs`` would let it go on."""
    import yaml

    defaults = yaml.safe_load((ROOT / "properties" / "overall.yaml").read_text())
    stopping, budget = extra.get("stopping_step", defaults["stopping_step"]), extra.get("epochs", 0)
    best, epochs = entry.get("best_epoch"), entry.get("epochs") or 0
    return best is not None and epochs - 1 - best < stopping and budget > epochs


def read_runs(runs_file):
    """The runs recorded under ``--out`` ({} before the first)."""
    return json.loads(Path(runs_file).read_text()) if Path(runs_file).exists() else {}


def update_runs(runs_file, name, entry):
    """Set run ``name``'s entry in ``runs.json``, re-read under a lock and replaced atomically, so that
    several ``figures.py --only ...`` processes training different runs into one ``--out`` keep each
    other's entries."""
    import fcntl

    from dataset_tools.pipeline import write_json

    with open(f"{runs_file}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_json(str(runs_file), {**read_runs(runs_file), name: entry})


def commit_now():
    from reproduce_table3 import code_commit

    return code_commit()


def stamp(argv, commit=None):
    from reproduce_table3 import run_stamp

    return run_stamp("figures.py", " ".join(argv), commit)


def summary(out, stamp_line):
    """``summary.md`` from the figures' JSON (what each figure shows, in numbers)."""
    lines = [stamp_line, ""]
    folder = Path(out)
    if (folder / "ablation.json").is_file():
        rows = json.loads((folder / "ablation.json").read_text())["rows"]
        lines += ["Figure 2 (ablation): test R@20 / N@20", "", "| run | R@20 | N@20 |", "| --- | --- | --- |"]
        lines += [f"| {r['label']} | " + (" | ".join(f"{r[m]:.4f}" for m in ("recall@20", "ndcg@20"))
                                          if not r.get("diverged") else "diverged | diverged") + " |" for r in rows]
        lines.append("")
    if (folder / "convergence.json").is_file():
        runs = json.loads((folder / "convergence.json").read_text())["runs"]
        lines += ["Figure 3 (convergence): validation R@20", "",
                  "| run | epochs evaluated | best | at epoch | first epoch >= 95% of best |", "| --- | --- | --- | --- | --- |"]
        for run in runs:
            values = run["recall@20"]
            best = max(values)
            first = next(e for e, v in zip(run["epochs"], values) if v >= 0.95 * best)
            lines.append(f"| {run['label']} | {len(values)} | {best:.4f} | {run['epochs'][values.index(best)]} | {first} |")
        lines.append("")
    if (folder / "groups.json").is_file():
        models = json.loads((folder / "groups.json").read_text())["models"]
        lines += ["Figure 4 (user groups by training interactions, G1 the sparsest): test R@20 (change vs the first)", "",
                  "| model | " + " | ".join(f"G{i + 1} ({g['train_interactions'][0]}-{g['train_interactions'][1]})"
                                       for i, g in enumerate(models[0]["groups"])) + " | all |",
                  "| --- |" + " --- |" * (len(models[0]["groups"]) + 1)]
        for model in models:
            cells = [f"{g['recall@20']:.4f}" + (f" ({g['improvement_%']['recall@20']:+.1f}%)" if "improvement_%" in g else "")
                     for g in model["groups"]]
            lines.append(f"| {model['label']} | " + " | ".join(cells) + f" | {model['overall']['recall@20']:.4f} |")
        lines.append("")
    if (folder / "dendrogram.json").is_file():
        data = json.loads((folder / "dendrogram.json").read_text())
        lines += [f"Figure 5 (Ward on log_0 of {len(data['items'])} sampled items, {data['clusters']} clusters)", "",
                  "| model | cophenetic correlation | cluster sizes | merge heights q25 / q50 / q75 / max |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {m['label']} | {m['cophenetic_correlation']:.3f} | {m['cluster_sizes']} | "
                  + " / ".join(f"{h:.3f}" for h in m["merge_heights_quartiles"]) + " |" for m in data["models"]]
    lines += ["", *paper_check(folder)]
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    return folder / "summary.md"


def paper_check(folder):
    """Whether each drawn figure agrees with the paper's statement (Sections 5.4-5.7), and by how much,
    computed from the figures' JSON (the first model or run is the reference, as drawn)."""
    out = ["Against the paper (computed from the JSON above):", ""]
    if (folder / "ablation.json").is_file():
        rows = {r["label"]: r for r in json.loads((folder / "ablation.json").read_text())["rows"]}
        full = rows.get("HyperLLM")
        if full and not full.get("diverged"):
            worse = [(k, 100 * (r["recall@20"] / full["recall@20"] - 1)) for k, r in rows.items()
                     if k != "HyperLLM" and not r.get("diverged")]
            above = [f"{k} {d:+.1f}%" for k, d in worse if d > 0]
            out.append("- Figure 2 (every component helps: each variant below the full model): "
                       + ("agrees" if not above else f"does not hold for {', '.join(above)}")
                       + "; R@20 vs HyperLLM: " + ", ".join(f"{k} {d:+.1f}%" for k, d in worse)
                       + "".join(f"; {k} diverged" for k, r in rows.items() if r.get("diverged")))
    if (folder / "convergence.json").is_file():
        runs = {r["label"]: r for r in json.loads((folder / "convergence.json").read_text())["runs"]}

        def first_at(run, level):
            return next(e for e, v in zip(run["epochs"], run["recall@20"]) if v >= level)

        def first_near_best(run):
            return first_at(run, 0.95 * max(run["recall@20"]))
        if "HyperLLM" in runs:
            ours = first_near_best(runs["HyperLLM"])
            others = {k: first_near_best(r) for k, r in runs.items() if k != "HyperLLM"}
            # a run that stops early at a low best reaches 95% of it soon: so also the epochs to one level that
            # every run reaches (the lowest of the runs' best values)
            level = min(max(r["recall@20"]) for r in runs.values())
            at_level = {k: first_at(r, level) for k, r in runs.items()}
            out.append("- Figure 3 (the meta-optimised start converges in far fewer epochs): "
                       + ("agrees" if all(ours < e for e in others.values()) else "does not hold")
                       + f" by the first epoch at 95% of the run's own best validation R@20: HyperLLM {ours}, "
                       + ", ".join(f"{k} {e}" for k, e in others.items())
                       + "; " + ("agrees" if all(at_level["HyperLLM"] < e for k, e in at_level.items()
                                                 if k != "HyperLLM") else "does not hold")
                       + f" by the first epoch at validation R@20 {level:.4f} (the lowest best among the runs, a "
                       "level each reaches): " + ", ".join(f"{k} {e}" for k, e in at_level.items())
                       + "; validation R@20 after one epoch: "
                       + ", ".join(f"{k} {r['recall@20'][0]:.4f}" for k, r in runs.items())
                       + "; best validation R@20 (the paper's figure does not compare it): "
                       + ", ".join(f"{k} {max(r['recall@20']):.4f}" for k, r in runs.items()))
    if (folder / "groups.json").is_file():
        model = json.loads((folder / "groups.json").read_text())["models"][-1]
        gains = [g["improvement_%"]["recall@20"] for g in model["groups"]]
        sparse, dense = sum(gains[:2]) / 2, sum(gains[-2:]) / 2
        out.append("- Figure 4 (helps every user group, most the sparse ones): "
                   + ("agrees" if min(gains) > 0 and sparse > dense else
                      "helps every group, but not most the sparse ones" if min(gains) > 0 else "does not hold")
                   + f"; {model['label']} R@20 change G1..G5: " + " / ".join(f"{g:+.1f}%" for g in gains)
                   + f" (mean of G1-G2 {sparse:+.1f}%, of G4-G5 {dense:+.1f}%)")
    if (folder / "dendrogram.json").is_file():
        models = json.loads((folder / "dendrogram.json").read_text())["models"]
        base, ours = models[0], models[-1]
        delta = ours["cophenetic_correlation"] - base["cophenetic_correlation"]
        out.append("- Figure 5 (HyperLLM's representations are more hierarchical; measured here as the cophenetic "
                   "correlation of Ward's tree, how faithfully a hierarchy represents the items' distances): "
                   + ("agrees" if delta > 0 else "does not hold")
                   + f"; {base['label']} {base['cophenetic_correlation']:.3f}, {ours['label']} "
                   f"{ours['cophenetic_correlation']:.3f} ({delta:+.3f})")
    return out if len(out) > 2 else []


def main(argv=None):
    from recbole_hyperllm import analysis
    from reproduce_table3 import parse_overrides

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "beauty"])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hyperllm-official"))
    parser.add_argument("--workdir", default="/tmp/figures")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "figures_ml100k"))
    parser.add_argument("--figures", default=",".join(FIGURES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--only", default="", help="train only these runs (comma-separated names, e.g. "
                        "'w/o Meta,Base'), so that several processes can share the runs of one --out; the figures "
                        "are drawn once every run they need is recorded")
    parser.add_argument("--extend", action="store_true",
                        help="train again, from its own -last.pth, every recorded run that ran out of epochs "
                             "(its best epoch within stopping_step of its last), up to the --set epochs given now")
    parser.add_argument("--no-train", action="store_true", help="train nothing: draw from what is recorded")
    parser.add_argument("--draw-unfinished", action="store_true",
                        help="convergence: draw a run that has no record yet from its progress file (labelled "
                             "unfinished, with its epochs so far) instead of leaving the figure undrawn")
    parser.add_argument("--reuse", action="append", default=[], metavar="NAME=RECORD",
                        help="take run NAME from a finished run another command trained (its -result.json, e.g. a "
                             "compare_frameworks.py cell) instead of training it, once its configuration and input "
                             "files are checked equal to what NAME would train with here")
    parser.add_argument("--backbone", default="HGCF", help="the backbone of Figures 2-4 (Figure 5: HRCF)")
    parser.add_argument("--semantic", default="released", choices=["released", "tag-summaries"],
                        help="beauty: the semantic side (see the module docstring)")
    args = parser.parse_args(argv)
    extra = parse_overrides(args.set)
    figures, dataset, files, workdir, own_phase1 = FIGURES, args.dataset, None, args.workdir, False
    if args.dataset == "beauty":
        from reproduce_table3 import DATASET, config_files, convert

        if not (Path(args.data) / "beauty" / "train_matrix.npz").is_file():
            print(f"skipped: the authors' release is not at {args.data}")
            return 0
        if args.semantic == "tag-summaries":
            from compare_frameworks import beauty_inputs

            figures, dataset, files, own_phase1 = FIGURES, DATASET, config_files, True
            workdir = beauty_inputs(args.data, args.workdir)
        else:
            figures, dataset, files, workdir = BEAUTY_FIGURES, DATASET, config_files, convert(args.data, args.workdir)
    else:
        extra.setdefault("seed", 2020)
    os.makedirs(args.out, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the running child is stopped too
    runs_file = Path(args.out) / "runs.json"
    wanted = args.figures.split(",")
    unknown = [f for f in wanted if f not in figures]
    if unknown:
        raise SystemExit(f"--figures {unknown[0]} is not drawn for {args.dataset}; choose from {sorted(figures)}")
    history_only = all(figure in ("ablation", "convergence") for figure in wanted)
    names = list(dict.fromkeys(n for figure in wanted for n in figures[figure]))
    only = [n for n in args.only.split(",") if n] if args.only else names
    if set(only) - set(names):
        raise SystemExit(f"--only {sorted(set(only) - set(names))[0]!r} is not a run of --figures {args.figures}; "
                         f"choose from {names}")
    reuse = dict(r.partition("=")[::2] for r in args.reuse)
    if set(reuse) - set(names):
        raise SystemExit(f"--reuse {sorted(set(reuse) - set(names))[0]!r} is not a run of --figures {args.figures}; "
                         f"choose from {names}")
    for name, record in reuse.items():
        entry = {**reuse_run(name, record, dataset, workdir, extra, files, own_phase1, args.backbone), **stamp(argv)}
        update_runs(runs_file, name, dict(entry, kept_record=keep_record(record, args.out, name)))
        print(f"{name}: reused {record}", flush=True)
    for name in [] if args.no_train else [n for n in only if n not in reuse]:
        runs = read_runs(runs_file)  # another figures.py (--only other runs) may have added its runs
        extend = args.extend and name in runs and ran_out_of_epochs(runs[name], extra)
        if name in runs and not extend and (runs[name].get("record") and os.path.isfile(runs[name]["record"])
                                            or history_only and history_record(runs[name], args.out)):
            own = runs[name].get("record")
            if not runs[name].get("kept_record") and own and os.path.isfile(own):  # a run made before kept copies
                update_runs(runs_file, name, dict(runs[name], kept_record=keep_record(own, args.out, name)))
            continue
        print(f"training {name} ..." + (f" (extended to {extra['epochs']} epochs)" if extend else ""), flush=True)
        started = commit_now()  # the code the run loads, not a commit made while it trains
        entry = {**train(name, dataset, workdir, extra, files, own_phase1, args.backbone), **stamp(argv, started)}
        if entry.get("record") and os.path.isfile(entry["record"]):
            entry["kept_record"] = keep_record(entry["record"], args.out, name)
        elif extend:  # a failed extension never replaces the run it was to extend
            print(f"{name}: not extended ({entry.get('diverged') or entry.get('error')}); its record is kept")
            continue
        update_runs(runs_file, name, entry)
        print(f"{name}: {entry.get('test_result') or entry.get('diverged') or entry.get('error')}", flush=True)
    runs = read_runs(runs_file)
    for figure in wanted:
        names = figures[figure]
        failed = [n for n in names if not runs.get(n, {}).get("record")]
        if failed and figure == "convergence" and args.draw_unfinished:
            partial = {n: unfinished_record(n, workdir, args.out, own_phase1, args.backbone) for n in failed}
            if all(partial.values()):
                inputs = [history_record(runs[n], args.out) if n not in partial else partial[n][1] for n in names]
                labels = [partial[n][0] if n in partial else n for n in names]
                print(figure, *analysis.run(figure, inputs, args.out, labels=labels, command=stamp(argv)["command"]))
                continue
        if failed:
            print(f"{figure} not drawn: {failed[0]} left no record "
                  f"({runs[failed[0]].get('error') if failed[0] in runs else 'not trained yet'})")
            continue
        inputs = [history_record(runs[n], args.out) if figure in ("ablation", "convergence") else
                  json.loads(Path(runs[n]["record"]).read_text())["checkpoint"] for n in names]
        print(figure, *analysis.run(figure, inputs, args.out, labels=names, command=stamp(argv)["command"]))
    now = stamp(argv)
    dates = sorted(r["date"] for r in runs.values() if "date" in r)
    line = (f"Command: `{now['command']}`; runs {dates[0]} to {dates[-1]} at commits "
            f"{', '.join(sorted({r['commit'] for r in runs.values() if 'commit' in r}))}; figures drawn at {now['commit']}, "
            f"{now['date']}; machine {now['machine']}")
    line += "".join(f"; {n} reused from `{r['reused_record']}` (trained by another command, checked equal)"
                    for n, r in runs.items() if r.get("reused_record"))
    print("summary", summary(args.out, line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
