"""Hyper-parameter search with Ray Tune over this plugin's models (RecBole's ``run_hyper.py --tool=Ray`` path).

RecBole's own Ray entry (``run_hyper.py`` of its repository, not in the wheel) runs ``tune.run`` over its
``objective_function`` with an ASHA scheduler and one GPU per trial. Here the objective is the plugin's
(``quick_start.objective_function``: plugin trainers, checkpoints loaded on torch >= 2.6), a trial asks
for one GPU when there is one and one CPU otherwise, and the search space is read from the same RecBole
``.hyper`` file the hyperopt path reads:

    key choice [v1, v2, ...]     -> tune.choice
    key uniform lo,hi            -> tune.uniform(lo, hi)
    key loguniform lo,hi         -> tune.loguniform(e^lo, e^hi)   (RecBole/hyperopt give natural-log bounds)
    key quniform lo,hi,q         -> tune.quniform(lo, hi, q)

Needs ``pip install -e .[ray]`` (ray 2.6.3 with pyarrow 18.1: newer pyarrow needs numpy 2, which RecBole
1.2.1 cannot use).
"""
import math
import os

from recbole_hyperllm.config_check import read_search_space
from recbole_hyperllm.errors import ConfigError

PATH_KEYS = ("data_path", "checkpoint_dir", "phase1_cache_dir", "resume_from")


def search_space(params_file, exhaustive=False):
    """{key: Ray Tune domain} of a RecBole ``.hyper`` file; a line it cannot read names the file and line.
    ``exhaustive`` (``--algo=exhaustive``): every ``choice`` is a grid, each combination run once."""
    from ray import tune

    space = {}
    for number, key, kind, values in read_search_space(params_file):
        try:
            if kind == "choice":
                space[key] = tune.grid_search(values) if exhaustive else tune.choice(values)
            elif kind == "uniform":
                space[key] = tune.uniform(*values)
            elif kind == "loguniform":
                space[key] = tune.loguniform(math.exp(values[0]), math.exp(values[1]))
            else:
                space[key] = tune.quniform(*values)
        except (ValueError, TypeError) as error:  # e.g. the wrong number of bounds
            raise ConfigError(f"{params_file}, line {number}: {error}; write 'key uniform lo,hi', "
                              "'key loguniform lo,hi' or 'key quniform lo,hi,q'") from None
    return space


def absolute_paths(settings):
    """Trials run in their own folders: path settings are made absolute first."""
    return {k: (os.path.abspath(v) if k in PATH_KEYS and isinstance(v, str) else v) for k, v in settings.items()}


def _trial(params, fixed, model, dataset, config_file_list):
    import sys

    from ray.air import session

    from recbole_hyperllm.quick_start import objective_function

    sys.argv = sys.argv[:1]  # RecBole reads --key=value from the command line: a Ray worker's are Ray's own

    result = objective_function({**fixed, **params}, config_file_list, model=model, dataset=dataset)
    session.report({"best_valid_score": result["best_valid_score"],
                    **{f"valid_{k}": v for k, v in result["best_valid_result"].items()},
                    **{f"test_{k}": v for k, v in result["test_result"].items()}})


def ray_tune(model, dataset, config_file_list, fixed, params_file, num_samples, local_dir, cpus=None, exhaustive=False):
    """Ray Tune over ``params_file`` (``num_samples`` random draws, or every combination of the choices once
    when ``exhaustive``); returns (best params, best trial's metrics, every trial's params and metrics)."""
    import ray
    import torch
    from ray import tune

    space = search_space(params_file, exhaustive)
    files = [os.path.abspath(f) for f in config_file_list or []] or None
    gpu = torch.cuda.is_available()
    ray.init(num_cpus=cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        analysis = tune.run(
            tune.with_parameters(_trial, fixed=absolute_paths(fixed), model=model, dataset=dataset,
                                 config_file_list=files),
            config=space, num_samples=1 if exhaustive else num_samples, metric="best_valid_score", mode="max",
            resources_per_trial={"gpu": 1} if gpu else {"cpu": 1}, local_dir=os.path.abspath(local_dir),
            verbose=1, raise_on_failed_trial=False)
    finally:
        ray.shutdown()
    trials = [(trial.config, trial.last_result) for trial in analysis.trials]
    failed = [trial for trial in analysis.trials if trial.status == "ERROR"]
    if failed and len(failed) == len(analysis.trials):
        raise RuntimeError(f"every Ray trial failed; see {failed[0].local_path}/error.txt")
    return analysis.best_config, analysis.best_result, trials
