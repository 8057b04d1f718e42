"""Every configuration checked before any data is loaded or any epoch runs (issue 13).

* YAML files parse, or the error names the file and line (RecBole reads them as strings: its error
  names ``<unicode string>``).
* Every key given (config files, ``config_dict``, command line) is read by RecBole, this plugin, the
  model or its YAML; an unknown key is an error that suggests the closest known key. A key of another
  model only (e.g. ``meta_epochs`` given to ``HGCF``) is accepted with a warning: shared config files and
  benchmark settings carry such keys on purpose.
* Values that cannot train are refused: epochs, sizes, margins, learners, metrics and the validation
  metric, the checkpoint folder.

Errors are ``ConfigError`` (one line: the key, where it came from, the allowed values); the run script
prints them and exits 2.
"""
import difflib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import yaml

from recbole_hyperllm.errors import ConfigError

RECBOLE_PROPERTIES = Path(__import__("recbole").__file__).resolve().parent / "properties"
PLUGIN_PROPERTIES = Path(__file__).resolve().parent.parent / "properties"

# Keys RecBole or the run scripts set or read that no YAML file lists.
RUNTIME_KEYS = frozenset({
    "model", "dataset", "config_files", "MODEL_TYPE", "device", "local_rank", "single_spec",
    "nproc", "world_size", "ip", "port", "offset",                      # RecBole's multi-process keys
    "params_file", "output_file", "display_file", "tool", "algo", "max_evals", "early_stop",  # run_hyper.py's
    "ray_dir", "cpus",
})
# Keys this plugin reads in code with no default in properties/ (a test keeps this list complete).
PLUGIN_CODE_KEYS = frozenset({"ml100k_split_seed"})

RECBOLE_LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")
RIEMANNIAN_LEARNERS = ("rsgd", "radam")


def yaml_keys(path):
    """The top-level keys of a YAML file; a syntax error names the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError(f"config file {path}: {error.strerror}; check the path given to --config_files") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: YAML syntax error ({problem}); "
                          "write one 'key: value' per line") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path}: holds a {type(content).__name__}, not 'key: value' lines")
    return content


@lru_cache(maxsize=None)
def _keys_of(path):
    return frozenset(yaml_keys(path))


def recbole_keys(dataset):
    """Keys RecBole itself reads: its argument lists and the YAML defaults it loads for any model."""
    from recbole.utils import argument_list

    keys = set(argument_list.general_arguments + argument_list.training_arguments
               + argument_list.evaluation_arguments + argument_list.dataset_arguments)
    files = [RECBOLE_PROPERTIES / "overall.yaml", RECBOLE_PROPERTIES / "dataset" / "sample.yaml",
             RECBOLE_PROPERTIES / "dataset" / f"{dataset}.yaml",
             *sorted((RECBOLE_PROPERTIES / "quick_start_config").glob("*.yaml"))]
    for path in files:
        if path.is_file():
            keys |= _keys_of(str(path))
    return keys


def model_keys(model_name):
    """Keys of the model's own YAML files: the plugin's declared chain, or RecBole's model YAML."""
    from recbole_hyperllm.utils import model_property_files

    files = model_property_files(model_name) or [str(RECBOLE_PROPERTIES / "model" / f"{model_name}.yaml")]
    return set().union(*[_keys_of(f) for f in files if os.path.isfile(f)])


def other_model_keys():
    """{key: [model YAMLs that list it]} over every plugin and RecBole model YAML."""
    owners = {}
    for path in sorted(PLUGIN_PROPERTIES.glob("model/*.yaml")) + sorted((RECBOLE_PROPERTIES / "model").glob("*.yaml")):
        for key in _keys_of(str(path)):
            owners.setdefault(key, []).append(path.stem)
    return owners


def key_sources(config, config_file_list):
    """{key: where it was given}: the config file (last one wins, as in RecBole), config_dict, command line."""
    sources = {}
    for path in config_file_list or []:
        for key in yaml_keys(path):
            sources[key] = f"config file {path}"
    for key in config.variable_config_dict:
        sources[key] = "config_dict"
    for key in config.cmd_config_dict:
        sources[key] = f"--{key}=... on the command line"
    return sources


def known_keys(model_name, dataset):
    """Every key a run of ``model_name`` on ``dataset`` reads."""
    return (recbole_keys(dataset) | model_keys(model_name) | RUNTIME_KEYS | PLUGIN_CODE_KEYS
            | _keys_of(str(PLUGIN_PROPERTIES / "overall.yaml")))


def _suggestion(key, candidates):
    near = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f"did you mean '{near[0]}'? " if near else ""


def check_search_space(params_file, model_name, dataset):
    """Every key a RecBole ``.hyper`` search space tunes is read by the model (a key of another model would
    only repeat the same run); the error names the file and line."""
    known = known_keys(model_name, dataset)
    with open(params_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            key = line.split()[0] if line.strip() else None
            if key is not None and key not in known:
                raise ConfigError(f"{params_file}, line {number}: '{key}' is not read by {model_name}, so tuning it "
                                  f"changes nothing: {_suggestion(key, known)}remove the line or fix the key")


def check_known_keys(config, config_file_list, warn):
    """Unknown keys are ConfigErrors suggesting the nearest known key; keys of other models are warnings."""
    known = known_keys(config["model"], config["dataset"])
    owners = other_model_keys()
    for key, source in key_sources(config, config_file_list).items():
        if key in known:
            continue
        if key in owners:
            warn(f"config key '{key}' ({source}) is not read by {config['model']}; it is a key of "
                 f"{', '.join(owners[key][:4])}")
            continue
        hint = _suggestion(key, known | set(owners))
        raise ConfigError(f"config key '{key}' ({source}) is not read by RecBole, this plugin or "
                          f"{config['model']}: {hint}remove it or fix its name")


# ----- values -----------------------------------------------------------------------------------------------
def _integer(config, key, minimum):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config key '{key}' is {value!r}; it must be an integer >= {minimum}")


def _number(config, key, minimum=0.0, strict=True):
    value = config[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise ConfigError(f"config key '{key}' is {value!r}; it must be a number {'>' if strict else '>='} {minimum:g}")


GENERAL_RULES = {  # any model, RecBole's included: key -> check
    "epochs": lambda c, k: _integer(c, k, 1),
    "train_batch_size": lambda c, k: _integer(c, k, 1),
    "eval_batch_size": lambda c, k: _integer(c, k, 1),
    "eval_step": lambda c, k: _integer(c, k, 1),
    "stopping_step": lambda c, k: _integer(c, k, 1),
    "learning_rate": lambda c, k: _number(c, k),
    "weight_decay": lambda c, k: _number(c, k, strict=False),
}
PLUGIN_RULES = {  # this plugin's hyperbolic models
    "embedding_size": lambda c, k: _integer(c, k, 2),  # a Lorentz point: time coordinate + at least one more
    "n_layers": lambda c, k: _integer(c, k, 1),
    "margin": lambda c, k: _number(c, k),              # margin <= 0: the hinge is 0 from the first batch
    "max_norm": lambda c, k: _number(c, k, strict=False),
    "max_step": lambda c, k: _number(c, k, strict=False),
    "init_scale": lambda c, k: _number(c, k),
    "meta_epochs": lambda c, k: _integer(c, k, 1),
    "meta_stopping_step": lambda c, k: _integer(c, k, 1),
    "num_experts": lambda c, k: _integer(c, k, 1),
}


def check_values(config, plugin_model):
    rules = dict(GENERAL_RULES, **(PLUGIN_RULES if plugin_model else {}))
    for key, rule in rules.items():
        if config[key] is not None:
            rule(config, key)
    learners = RECBOLE_LEARNERS + (RIEMANNIAN_LEARNERS if plugin_model else ())
    learner = str(config["learner"]).lower()
    if learner not in learners:
        raise ConfigError(f"config key 'learner' is {config['learner']!r}; use one of {learners}")
    check_metrics(config, plugin_model)


def check_metrics(config, plugin_model):
    """``metrics``, ``topk`` and ``valid_metric`` name what RecBole's evaluator computes; a sum of metrics
    (``recall@20+ndcg@20``) is this plugin's trainer's, not RecBole's."""
    from recbole.evaluator.register import metrics_dict

    metrics = config["metrics"] if isinstance(config["metrics"], list) else [config["metrics"]]
    unknown = [m for m in metrics if str(m).lower() not in metrics_dict]
    if unknown:
        raise ConfigError(f"config key 'metrics' names {unknown}, which RecBole does not compute; use some of "
                          f"{sorted(metrics_dict)}")
    topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in topk):
        raise ConfigError(f"config key 'topk' is {config['topk']!r}; it must be integers >= 1")
    at_k = {m.lower() for m in metrics if set(metrics_dict[m.lower()].metric_need) & {"rec.topk", "rec.items"}}
    computed = {f"{m}@{k}" for m in at_k for k in topk} | {m.lower() for m in metrics if m.lower() not in at_k}
    terms = [t.strip().lower() for t in str(config["valid_metric"]).split("+")]
    if len(terms) > 1 and not plugin_model:
        raise ConfigError(f"config key 'valid_metric' is {config['valid_metric']!r}: a sum of metrics is "
                          f"supported by this plugin's models only; use one of {sorted(computed)}")
    missing = [t for t in terms if t not in computed]
    if missing:
        raise ConfigError(f"config key 'valid_metric' names {missing}, which is not computed (metrics "
                          f"{metrics}, topk {topk}): use some of {sorted(computed)} or add to 'metrics'/'topk'")


def check_checkpoint_dir(config):
    """The checkpoint folder can be made and written (else a full epoch is lost before torch says so)."""
    folder = os.path.abspath(config["checkpoint_dir"])
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ConfigError(f"config key 'checkpoint_dir' is {folder}, which cannot be written ({error.strerror}); "
                          "use --checkpoint_dir=<a writable folder>") from None


def validate_config(config, config_file_list=None, warn=print):
    """All checks of this module, in order; ``warn`` receives one line per accepted oddity."""
    from recbole_hyperllm.model import MODELS

    plugin_model = config["model"] in MODELS
    check_known_keys(config, config_file_list, warn)
    check_values(config, plugin_model)
    check_checkpoint_dir(config)
