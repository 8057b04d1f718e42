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

from recbole_hyperllm import trainer
from recbole_hyperllm.errors import ConfigError, integer, positive

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
RIEMANNIAN_LEARNERS = tuple(trainer.RIEMANNIAN_LEARNERS)  # the geoopt optimisers the trainer builds


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


SEARCH_KINDS = ("choice", "uniform", "loguniform", "quniform")


def read_search_space(params_file):
    """[(line number, key, kind, values)] of a RecBole ``.hyper`` file (``key kind values`` per line; values:
    the list of a ``choice``, the numbers of the others); a line that is not one names the file and line."""
    import ast

    try:
        lines = Path(params_file).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigError(f"--params_file {params_file}: {error.strerror}") from None
    space = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{params_file}, line {number}"
        parts = line.split(maxsplit=2)
        if len(parts) < 3 or parts[1] not in SEARCH_KINDS:
            raise ConfigError(f"{where}: {line.strip()!r} is not 'key kind values' with kind in {SEARCH_KINDS}")
        key, kind, values = parts
        try:
            parsed = ast.literal_eval(values) if kind == "choice" else [float(v) for v in values.split(",")]
        except (ValueError, SyntaxError):
            parsed = None
        if kind == "choice" and not isinstance(parsed, list) or kind != "choice" and parsed is None:
            raise ConfigError(f"{where}: {values!r} is not a list like [0.1, 0.5] (choice) or numbers like 0.1,0.5")
        space.append((number, key, kind, parsed))
    return space


def check_search_space(params_file, model_name, dataset):
    """Every line of a RecBole ``.hyper`` search space is ``key kind values`` over a key the model reads (a key
    of another model would only repeat the same run); the error names the file and line."""
    known = known_keys(model_name, dataset)
    owners = other_model_keys()
    for number, key, _, _ in read_search_space(params_file):
        if key not in known:
            owner = f"it is a key of {', '.join(owners[key][:4])}; " if key in owners else _suggestion(key, known)
            raise ConfigError(f"{params_file}, line {number}: '{key}' is not read by {model_name}, so tuning it changes nothing: "
                              f"{owner}remove the line or fix the key")


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
def _choice(config, key, allowed):
    if config[key] not in allowed:
        raise ConfigError(f"config key '{key}' is {config[key]!r}; use one of {allowed}")


def _fraction(config, key):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"config key '{key}' is {value!r}; it must be a number in [0, 1)")


def _dataset_name(config, key):
    name = str(config[key])
    if not name or "/" in name or "\\" in name or name.strip() != name:
        raise ConfigError(f"config key 'dataset' is {name!r}: a dataset name is a folder name under data_path, "
                          f"without slashes or spaces (e.g. --dataset={name.strip().strip('/').split('/')[-1]})")


def _benchmark_files(config, key):
    value = config[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"config key 'benchmark_filename' is {value!r}; it must be a list of file parts, on the "
                          "command line quoted: --benchmark_filename=\"['train','valid','test']\"")


GENERAL_RULES = {  # any model, RecBole's included: key -> check
    "seed": lambda c, k: integer(c, k, 0),
    "dataset": _dataset_name,
    "benchmark_filename": _benchmark_files,
    "epochs": lambda c, k: integer(c, k, 1),
    "train_batch_size": lambda c, k: integer(c, k, 1),
    "eval_batch_size": lambda c, k: integer(c, k, 1),
    "eval_step": lambda c, k: integer(c, k, 1),
    "stopping_step": lambda c, k: integer(c, k, 1),
    "learning_rate": lambda c, k: positive(c, k),
    "weight_decay": lambda c, k: positive(c, k, allow_zero=True),
}
PLUGIN_RULES = {  # this plugin's hyperbolic models
    "embedding_size": lambda c, k: integer(c, k, 2),  # a Lorentz point: time coordinate + at least one more
    "n_layers": lambda c, k: integer(c, k, 1),
    "margin": lambda c, k: positive(c, k),              # margin <= 0: the hinge is 0 from the first batch
    "max_norm": lambda c, k: positive(c, k, allow_zero=True),
    "max_step": lambda c, k: positive(c, k, allow_zero=True),
    "init_scale": lambda c, k: positive(c, k),
    "meta_epochs": lambda c, k: integer(c, k, 1),
    "meta_stopping_step": lambda c, k: integer(c, k, 1),
    "num_experts": lambda c, k: integer(c, k, 1),
    "tag_margin": lambda c, k: positive(c, k),
    "tag_edge_passes": lambda c, k: integer(c, k, 1),
    "kar_max_norm": lambda c, k: positive(c, k, allow_zero=True),
    "meta_margin": lambda c, k: positive(c, k),
    "cl_temperature": lambda c, k: positive(c, k),
    "cl_weight": lambda c, k: positive(c, k, allow_zero=True),
    "num_neg": lambda c, k: integer(c, k, 1),
    "cl_chunk_size": lambda c, k: integer(c, k, 1),  # unset: chosen for the device
    "cl_compile": lambda c, k: _choice(c, k, (True, False)),  # unset: chosen for the device and size
    "ssl_ratio": _fraction,
    "embedding_space": lambda c, k: _choice(c, k, ("manifold", "tangent")),
    "test_mask": lambda c, k: _choice(c, k, ("train_valid", "train")),
    "hgch_init": lambda c, k: _choice(c, k, ("uniform", "pop")),
}


def check_values(config, plugin_model, warn=print):
    rules = dict(GENERAL_RULES, **(PLUGIN_RULES if plugin_model else {}))
    for key, rule in rules.items():
        if config[key] is not None:
            rule(config, key)
    learners = RECBOLE_LEARNERS + (RIEMANNIAN_LEARNERS if plugin_model else ())
    learner = str(config["learner"]).lower()
    if learner not in learners:
        raise ConfigError(f"config key 'learner' is {config['learner']!r}; use one of {learners}")
    check_metrics(config, plugin_model)
    from recbole_hyperllm.model import MODELS

    euclidean = getattr(MODELS.get(config["model"]), "euclidean", False)  # e.g. SeLLaRec: no manifold points
    if (plugin_model and not euclidean and learner not in RIEMANNIAN_LEARNERS
            and (config["embedding_space"] or "manifold") == "manifold"):
        warn(f"learner '{learner}' moves the points off the manifold (embedding_space: manifold); use rsgd or "
             "radam, or embedding_space: tangent")


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
    check_values(config, plugin_model, warn)
    check_checkpoint_dir(config)
