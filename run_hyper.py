"""Hyper-parameter search with RecBole's HyperTuning (hyperopt) over this plugin's models.

    python run_hyper.py --model=HyperLLM_HGCF --dataset=Amazon_Beauty \\
        --config_files="properties/beauty/dataset.yaml properties/beauty/HyperLLM_HGCF.yaml" \\
        --params_file=hyper/HyperLLM_HGCF.hyper --algo=random --max_evals=20 --data_path=/path/to/atomic

Other --key=value arguments are fixed RecBole config for every trial (e.g. --epochs=100).
``--tool=Ray`` runs the same search with Ray Tune instead (``pip install -e .[ray]``; one CPU per trial,
one GPU when there is one; ``--max_evals`` random samples, or with ``--algo=exhaustive`` every combination
of the ``choice`` lines once; ``--ray_dir`` keeps the trials).
The .hyper format is RecBole's: one line per key, ``key choice [..]``,
``key uniform lo,hi``, ``key loguniform lo,hi`` (natural-log bounds) or
``key quniform lo,hi,step``; ``--algo=exhaustive`` needs ``choice`` only.
"""
import argparse
import sys
from functools import partial

import yaml

from recbole.trainer import HyperTuning

from dataset_tools.common import PipelineError
from dataset_tools.default_data import prepare_inputs
from recbole_hyperllm.config_check import check_search_space
from recbole_hyperllm.errors import ConfigError, ONE_LINE_ERRORS
from recbole_hyperllm.quick_start import objective_function


def fixed_overrides(unknown):
    """--key=value pairs that are not run_hyper's own flags, values parsed as YAML."""
    overrides = {}
    for arg in unknown:
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"unrecognised argument {arg!r}: write --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default="HyperLLM_HGCF")
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="space-separated fixed config files")
    parser.add_argument("--params_file", default="hyper/HyperLLM_HGCF.hyper")
    parser.add_argument("--output_file", default="hyper_result.txt")
    parser.add_argument("--display_file", default=None, help="optional HTML plot of the trials")
    parser.add_argument("--algo", default="random", choices=["exhaustive", "random", "bayes"])
    parser.add_argument("--max_evals", type=int, default=20)
    parser.add_argument("--early_stop", type=int, default=10)
    parser.add_argument("--tool", default="Hyperopt", choices=["Hyperopt", "Ray"])
    parser.add_argument("--ray_dir", default="ray_results", help="Ray Tune's trial folder (--tool=Ray)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs Ray may use (--tool=Ray; default: all)")
    args, unknown = parser.parse_known_args(argv)
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    if args.max_evals < 1:
        raise ConfigError(f"--max_evals is {args.max_evals}; it must be at least 1")
    check_search_space(args.params_file, args.model, args.dataset)
    fixed = prepare_inputs(args.model, args.dataset, config_files, fixed_overrides(unknown))  # once, before trials
    if args.tool == "Ray":
        return ray_search(args, config_files, fixed)
    objective = partial(_objective, fixed=fixed, model=args.model, dataset=args.dataset)
    tuner = HyperTuning(objective, algo=args.algo, max_evals=args.max_evals, early_stop=args.early_stop,
                        params_file=args.params_file, fixed_config_file_list=config_files,
                        display_file=args.display_file)
    tuner.run()
    tuner.export_result(output_file=args.output_file)
    print("best params:", tuner.best_params)
    print("best result:", tuner.params2result[tuner.params2str(tuner.best_params)])
    return 0


def ray_search(args, config_files, fixed):
    from recbole_hyperllm.ray_tuning import ray_tune

    best, best_result, trials = ray_tune(args.model, args.dataset, config_files, fixed, args.params_file,
                                         args.max_evals, args.ray_dir, cpus=args.cpus,
                                         exhaustive=args.algo == "exhaustive")
    with open(args.output_file, "w", encoding="utf-8") as handle:
        for params, metrics in trials:
            handle.write(f"{params}\n  {metrics}\n")
    print("best params:", best)
    print("best result:", {k: v for k, v in (best_result or {}).items() if k.startswith(("valid_", "test_"))})
    return 0


def _objective(config_dict, config_file_list, fixed, model, dataset):
    return objective_function({**fixed, **config_dict}, config_file_list, model=model, dataset=dataset)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (*ONE_LINE_ERRORS, PipelineError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
