"""Seconds per Beauty epoch of HyperLLM_HGCF here and in the authors' code, measured side by side in one run.

    git clone https://github.com/Qin-lab-code/HyperLLM /path/to/authors   # commit 3cb1fa5 was measured
    python benchmarks/vs_authors.py --authors /path/to/authors [--epochs 4] [--rounds 2]
        [--data ../shared/data/hyperllm-official] [--out benchmarks/results/vs_authors.json]

Each round runs both sides one after the other, each in a fresh process with torch's default threads
and after ``--cooldown`` seconds of idling (a side that follows the other's full load of both cores
would otherwise start on a machine that has just been busy); odd rounds run the authors' side first,
even rounds ours (so neither always follows the other). The sides are:
the authors' ``main.py`` (HGCF + HyperLLM, Beauty, on --device (cpu by default), their release's hyper-parameters: ``--emb
16_50_0.1 --margin 1.6 --margin1 0.9``, all other arguments their defaults), then this plugin's
HyperLLM_HGCF with the same hyper-parameters (``properties/beauty``), each for ``--epochs`` epochs; then
the floor: the three matrix products of the exact Eq. 16 alone (6086 x 6086 x 51 in 128-row chunks,
as many steps as an epoch has batches).

The authors' code is run unmodified (a copy under a temporary folder, its ``data/beauty`` pointing at the
release, ``meta.pkl`` written from the matrix shape as their repository's copy holds); it prints no
times, so this script timestamps its output lines as they arrive (``python -u``): for epoch e >= 2,
training = from the last evaluation line of epoch e-1 to "Epoch e - Loss", evaluation = from there to
the last evaluation line of epoch e (validation, plus test when validation improved: their loop).
Epoch 1 is left out on both sides (their sampler processes start then). Ours come from the trainer's
own per-epoch timers (training, then validation). Figures are medians over epochs 2..E of all rounds.
Skips cleanly when the release or the authors' code is absent.
"""
import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reproduce_table3 import config_files, convert, run_in_subprocess, run_stamp  # noqa: E402

AUTHORS_ARGS = ["--dataset", "beauty", "--emb", "16_50_0.1", "--margin", "1.6", "--margin1", "0.9"]
LOSS_LINE = re.compile(r"^Epoch (\d+) - Loss")
EVAL_LINE = re.compile(r"^(Val|Test):")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", required=False, default=None, help="a clone of Qin-lab-code/HyperLLM")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hyperllm-official"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vs_authors.json"))
    parser.add_argument("--authors-commit", default=None, help="the commit of --authors when it is not a git clone")
    parser.add_argument("--markdown", action="store_true", help="print the table of --out (no runs)")
    parser.add_argument("--cooldown", type=float, default=30.0, help="idle seconds before each side's run")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where both sides and the floor run (cuda: their '--device cuda:0', our use_gpu)")
    return parser.parse_args(argv)


def authors_copy(authors, data, workdir):
    """A copy of the authors' code whose data/beauty and save/ point at the release."""
    code, data = Path(workdir) / "authors", Path(data).resolve()  # the links below must hold from any folder
    shutil.copytree(authors, code, ignore=shutil.ignore_patterns(".git", "data", "save", "log"))
    beauty = code / "data" / "beauty"
    beauty.mkdir(parents=True)
    for path in sorted((Path(data) / "beauty").iterdir()):
        (beauty / path.name).symlink_to(path)
    import scipy.sparse as sp
    shape = sp.load_npz(str(Path(data) / "beauty" / "train_matrix.npz")).shape
    with open(beauty / "meta.pkl", "wb") as handle:
        pickle.dump({"num_users": shape[0], "num_items": shape[1]}, handle)
    (code / "save").symlink_to(Path(data) / "phase1")
    (code / "log").mkdir()
    return code


def timestamped_lines(command, cwd):
    """[(seconds since start, line)] of a child's stdout; its stderr tail on failure."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    stderr = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    lines = [(time.perf_counter() - start, line.rstrip("\r\n")) for line in process.stdout]
    process.wait()
    reader.join()
    if process.returncode not in (0, None):
        raise RuntimeError(f"the authors' code exited with {process.returncode}: {''.join(stderr[-5:])}")
    return lines


def authors_epochs(lines):
    """[(epoch, train s, eval s)] for epochs >= 2 from timestamped lines (see the module docstring)."""
    loss_at, last_eval_at = {}, {}
    epoch = 0
    for stamp, line in lines:
        match = LOSS_LINE.match(line)
        if match:
            epoch = int(match.group(1))
            loss_at[epoch] = stamp
        elif EVAL_LINE.match(line) and epoch:
            last_eval_at[epoch] = stamp
    return [(e, loss_at[e] - last_eval_at[e - 1], last_eval_at[e] - loss_at[e])
            for e in sorted(loss_at) if e >= 2 and e - 1 in last_eval_at and e in last_eval_at]


def run_authors(code, epochs, device="cpu"):
    device_arg = ["--device", "cuda:0" if device == "cuda" else "cpu"]
    lines = timestamped_lines([sys.executable, "-u", "main.py", *AUTHORS_ARGS, *device_arg, "--epochs", str(epochs)], code)
    metrics = [line for _, line in lines if EVAL_LINE.match(line)]
    return {"epochs": authors_epochs(lines), "eval_lines": metrics}


def run_ours(data_path, workdir, epochs, device="cpu"):
    model = "HyperLLM_HGCF"
    config = {"data_path": data_path, "show_progress": False, "epochs": epochs, "use_gpu": device == "cuda",
              "checkpoint_dir": os.path.join(workdir, "saved")}
    result = run_in_subprocess(model, config, config_files(model))
    if "error" in result:
        raise RuntimeError(f"{model}: {result['error']}")
    train, valid = result["train_seconds"], result["valid_seconds"]
    return {"epochs": [(e + 1, train[e], valid[e]) for e in range(1, min(len(train), len(valid)))],
            "valid": result["best_valid_result"]}


def matmul_floor(steps, items=6086, width=51, chunk=128, repeats=3, device="cpu"):
    """Seconds per epoch of Eq. 16's three products alone (Gram chunk; its weights times each view),
    median of ``repeats`` epochs of ``steps`` steps, in a fresh process with the default threads."""
    sync = "torch.cuda.synchronize()" if device == "cuda" else "pass"
    code = f"""
import statistics, time, torch
torch.manual_seed(0)
a, b = torch.randn({items}, {width}, device="{device}"), torch.randn({items}, {width}, device="{device}")
gram = torch.empty({chunk}, {items}, device="{device}")
def step():
    for start in range(0, {items}, {chunk}):
        rows = a[start:start + {chunk}]
        g = torch.matmul(rows, b.t(), out=gram[:rows.size(0)])
        g @ b
        g.t() @ rows
step()
{sync}
epochs = []
for _ in range({repeats}):
    begin = time.perf_counter()
    for _ in range({steps}):
        step()
    {sync}
    epochs.append(time.perf_counter() - begin)
print(statistics.median(epochs))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def medians(runs):
    train = [t for run in runs for _, t, _ in run["epochs"]]
    evaluation = [v for run in runs for _, _, v in run["epochs"]]
    return {"train": statistics.median(train), "eval": statistics.median(evaluation),
            "epoch": statistics.median([t + v for run in runs for _, t, v in run["epochs"]]), "n": len(train)}


def markdown(result):
    a, o = result["authors"]["median"], result["ours"]["median"]
    stamp = result["run"]
    lines = [
        "# HyperLLM_HGCF on Beauty: seconds per epoch, the authors' code and this plugin, same run",
        "",
        f"Command: `{stamp['command']}`; commit {stamp['commit']}; {stamp['date']}; {stamp['machine']}; "
        f"authors' code {result['authors_commit']}; both on {result.get('device', 'cpu')}. {result['rounds']} rounds of {result['epochs_per_run']} epochs "
        f"each side, " + (f"{result['order']}, {result['cooldown_s']:.0f} s idle before each side" if "order" in result
                           else "alternating, the authors' side first") +
        f"; medians over epochs 2..{result['epochs_per_run']} ({a['n']} and {o['n']} epochs). "
        "Written by `benchmarks/vs_authors.py` (its docstring says how each side is timed).",
        "",
        "| | training s/epoch | evaluation s/epoch | epoch s | authors / ours (epoch) | authors / ours (training) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| authors' code (HGCF + HyperLLM) | {a['train']:.2f} | {a['eval']:.2f} | {a['epoch']:.2f} | | |",
        f"| this plugin (HyperLLM_HGCF, exact Eq. 16) | {o['train']:.2f} | {o['eval']:.2f} | {o['epoch']:.2f} | "
        f"{a['epoch'] / o['epoch']:.1f}x | {a['train'] / o['train']:.1f}x |",
        f"| floor: Eq. 16's three matrix products alone | {result['floor_per_epoch']:.2f} | | | | |",
        "",
        "Per round (epoch s, authors / ours): " + "; ".join(
            f"{ra:.2f} / {ro:.2f}" for ra, ro in zip(result["authors"]["per_round"], result["ours"]["per_round"])),
        "",
        "Their evaluation ranks the validation users every epoch and the test users too whenever validation "
        "improved (their loop); ours ranks the validation users every epoch (RecBole's `eval_step: 1`).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if args.markdown:
        print(markdown(json.loads(out.read_text())), end="")
        return 0
    if not (Path(args.data) / "beauty" / "train_matrix.npz").is_file():
        print(f"skipped: the authors' release is not at {args.data}")
        return 0
    if not args.authors or not (Path(args.authors) / "main.py").is_file():
        print(f"skipped: no authors' code at {args.authors} (clone Qin-lab-code/HyperLLM and pass --authors)")
        return 0
    if args.epochs < 2:
        raise SystemExit("--epochs must be >= 2 (epoch 1 is left out on both sides)")
    commit = args.authors_commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.authors,
                                                   capture_output=True, text=True).stdout.strip() or "unknown"
    authors_runs, our_runs = [], []
    with tempfile.TemporaryDirectory(prefix="vs-authors-") as workdir:
        data_path = convert(args.data, workdir)
        def authors_side(round_no):
            with tempfile.TemporaryDirectory(dir=workdir) as fresh:  # their first run writes caches into data/
                code = authors_copy(args.authors, args.data, fresh)
                time.sleep(args.cooldown)
                print(f"round {round_no}: authors' code, {args.epochs} epochs", flush=True)
                authors_runs.append(run_authors(code, args.epochs, args.device))

        def our_side(round_no):
            time.sleep(args.cooldown)
            print(f"round {round_no}: HyperLLM_HGCF, {args.epochs} epochs", flush=True)
            our_runs.append(run_ours(data_path, workdir, args.epochs, args.device))

        for round_no in range(1, args.rounds + 1):
            sides = (authors_side, our_side) if round_no % 2 else (our_side, authors_side)
            for side in sides:
                side(round_no)
        time.sleep(args.cooldown)
        steps = 18  # batches per Beauty epoch on both sides: ceil(70614 / 4096)
        floor = matmul_floor(steps, device=args.device)
    result = {
        "run": run_stamp("vs_authors.py", " ".join(argv if argv is not None else sys.argv[1:])),
        "authors_commit": commit, "epochs_per_run": args.epochs, "rounds": args.rounds, "device": args.device,
        "cooldown_s": args.cooldown, "order": "odd rounds the authors' side first, even rounds ours first",
        "authors": {"runs": authors_runs, "median": medians(authors_runs),
                    "per_round": [medians([r])["epoch"] for r in authors_runs]},
        "ours": {"runs": our_runs, "median": medians(our_runs), "per_round": [medians([r])["epoch"] for r in our_runs]},
        "floor_per_epoch": floor, "floor_steps": steps,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result), end="")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
