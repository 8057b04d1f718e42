"""One call that trains and evaluates a model of this plugin (or of RecBole), RecBole-style."""
import logging
import os
import re
import resource
import statistics
import time
from logging import getLogger

from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_hyperllm import atomic
from recbole_hyperllm.distributed import PluginConfig, is_writer
from recbole_hyperllm.config_check import validate_config, yaml_keys
from recbole_hyperllm.errors import ConfigError, DivergenceError
from recbole_hyperllm.model.hyperllm.tag_data import HOW_TO_MAKE
from recbole_hyperllm.trainer import HyperbolicTrainer, read_progress_file
from recbole_hyperllm.utils import declared_side_files, get_model, get_trainer, model_property_files


# The one dataset name RecBole maps to its own bundled files; this plugin splits it and adds side inputs.
BUNDLED = "ml-100k"
MAKE_BUNDLED = ("python -m dataset_tools prepare ml-100k --out <data_path> (the run scripts do it on first use: "
                "dataset_tools.default_data.prepare_inputs)")


def create_config(model, dataset, config_file_list=None, config_dict=None):
    """RecBole Config with the plugin's YAML defaults first, then the user's files and dict. Builds the
    config only: data is prepared by an explicit step (``dataset_tools.default_data.prepare_inputs``)."""
    files = model_property_files(model) + list(config_file_list or [])
    for path in files:  # a YAML error names the file and line (RecBole's would not)
        yaml_keys(path)
    try:
        config = PluginConfig(model=get_model(model), dataset=dataset, config_file_list=files, config_dict=config_dict)
    except NotImplementedError as error:  # RecBole's words for a metric it does not know
        unknown = re.match(r"There is no metric named '(.*)'", str(error))
        if not unknown:
            raise
        from recbole.evaluator.register import metrics_dict
        raise ConfigError(f"config key 'metrics' names ['{unknown.group(1)}'], which RecBole does not compute; use "
                          f"some of {sorted(metrics_dict)}") from None
    except SyntaxError as error:  # RecBole: the same --key given twice with different values
        raise ConfigError(f"{error.msg}: give each --key=value once") from None
    except ValueError as error:  # RecBole's own value checks (e.g. topk)
        raise ConfigError(f"RecBole refused the configuration: {error}") from None
    if dataset == BUNDLED:  # RecBole reads its bundled copy for this name; the plugin reads <data_path>/ml-100k
        config["data_path"] = os.path.join(config.external_config_dict.get("data_path") or "dataset", dataset)
    return config


def preflight(model, dataset, config_file_list=None, config_dict=None):
    """Every check that runs before data is loaded: (config, warnings, resume state or None)."""
    config = create_config(model, dataset, config_file_list, config_dict)
    warnings = []
    validate_config(config, config_file_list, warn=warnings.append)
    progress = resume_state(config)
    check_inputs(config, warn=warnings.append)
    return config, warnings, progress


def resume_state(config):
    """The checked state of ``resume_from`` (None without it), read before any data is loaded."""
    if not config["resume_from"]:
        return None
    if not issubclass(get_trainer(config["MODEL_TYPE"], config["model"]), HyperbolicTrainer):
        raise ConfigError(f"config key 'resume_from': {config['model']} is RecBole's model; resuming works with "
                          "this plugin's models only")
    return read_progress_file(config["resume_from"], config["model"], config["dataset"])


def check_inputs(config, warn=print):
    """The interactions (``atomic.check_interactions``) and the model's side files, before any data is loaded;
    the largest ``topk`` must leave items to rank."""
    check_side_files(config)
    items = set()
    for path in atomic.interaction_files(config["data_path"], config["dataset"], config["benchmark_filename"]):
        if os.path.isfile(path):
            items |= atomic.check_interactions(path, config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], warn)
    topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
    if items and max(topk) > len(items):
        raise ConfigError(f"config key 'topk' is {config['topk']}, but the interactions hold {len(items)} items: "
                          f"use values up to {len(items)}, e.g. --topk=\"[{max(1, len(items) // 4)}]\" with a "
                          "matching valid_metric")


def check_side_files(config):
    """Before any data is loaded: the interactions exist (else name the folder and how to make it), and the
    atomic files the configured model declares it reads (``side_files``) exist with their columns; returns
    those side files ({suffix: columns})."""
    data_path = config["data_path"]
    inter_files = atomic.interaction_files(data_path, config["dataset"], config["benchmark_filename"])
    if not any(os.path.isfile(path) for path in inter_files):
        how = MAKE_BUNDLED if config["dataset"] == BUNDLED else (
            "make it with `python -m dataset_tools.amazon` (raw Amazon reviews), `python -m dataset_tools.from_official` "
            "(the HyperLLM authors' release) or put RecBole atomic files there; --data_path sets the parent folder")
        raise atomic.AtomicFileError(f"{inter_files[0]} not found: no interactions for dataset "
                                     f"{config['dataset']!r} in {data_path}; {how}")
    needed = declared_side_files(config)
    if not needed:
        return needed
    purpose = f"{config['model']}" + (f" (variant={config['variant']}, ablation={config['ablation']})"
                                      if config["variant"] else "")
    atomic.require_files(data_path, config["dataset"], needed, purpose, HOW_TO_MAKE)
    return needed


TEST_MASKS = ("train_valid", "train")


def use_test_protocol(config, valid_data, test_data):
    """``test_mask: train`` masks only training items at test time (the authors' code);
    RecBole's default (``train_valid``) also masks validation items.

    Returns {mask: history} for both protocols, so the other one can be evaluated too. The training-only
    history is the validation loader's, whose users without validation rows RecBole leaves at None: theirs
    is the test history less their validation items, which they have none of, so the test history itself.
    """
    mode = config["test_mask"] or "train_valid"
    if mode not in TEST_MASKS:
        raise ConfigError(f"config key 'test_mask' is {mode!r}; use 'train_valid' (RecBole) or 'train' (authors)")
    if not hasattr(valid_data, "uid2history_item"):  # a sequential model's loaders mask no history (RecBole's protocol)
        return None
    train_only = valid_data.uid2history_item.copy()
    for user, history in enumerate(train_only):
        if history is None:
            train_only[user] = test_data.uid2history_item[user]
    histories = {"train_valid": test_data.uid2history_item, "train": train_only}
    test_data.uid2history_item = histories[mode]
    return histories


def evaluate_other_mask(trainer, test_data, histories, mode, show_progress):
    """Test metrics of the same (already loaded) model under the protocol not selected (none for sequential models)."""
    if histories is None:
        return None, {}
    other = TEST_MASKS[1 - TEST_MASKS.index(mode)]
    test_data.uid2history_item = histories[other]
    try:
        return other, dict(trainer.evaluate(test_data, load_best_model=False, show_progress=show_progress))
    finally:
        test_data.uid2history_item = histories[mode]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def init_logger_safely(config):
    """RecBole's ``init_logger``, with its ``./log/<model>`` folders made first (RecBole checks then creates
    them, so two runs started together in one folder race and one dies: FileExistsError) and the process id
    in the log file's name (RecBole's is the time to the second and a hash of the config, so two identical
    runs started in the same second wrote one file)."""
    import recbole.utils.logger as recbole_logger

    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    local_time = recbole_logger.get_local_time
    recbole_logger.get_local_time = lambda: f"{local_time()}-{os.getpid()}"
    try:
        init_logger(config)
    finally:
        recbole_logger.get_local_time = local_time


def run_recbole_hyperllm(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None):
    """Train and test ``model`` on ``dataset``: the model's ``before_training`` step (e.g. HyperLLM's phase 1,
    cached), then RecBole's fit and test. Side inputs are checked first; making them (the offline ml-100k
    default) is the caller's step: ``dataset_tools.default_data.prepare_inputs``."""
    started = time.perf_counter()
    config, warnings, progress = preflight(model, dataset, config_file_list, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger_safely(config)
    logger = getLogger()
    for line in warnings:
        logger.warning(line)
    logger.info(config)

    data = create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    histories = use_test_protocol(config, valid_data, test_data)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = get_model(config["model"])
    net = model_class(config, train_data.dataset).to(config["device"])
    logger.info(net)
    show = config["show_progress"]

    before = getattr(net, "before_training", None)
    phase1_progress = progress if progress is not None and progress.get("phase") == "meta" else None
    if phase1_progress is not None:  # resume_from a phase-1 progress file: phase 1 continues, phase 2 starts anew
        progress = None
    result = {"phase1": before(config, train_data, valid_data, logger, show_progress=show, resume=phase1_progress)
              if before else None}
    if result["phase1"] is not None:  # training starts from the same random state, phase 1 computed or cached
        restart_random_streams(config, train_data)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if progress is not None:
        trainer.resume_progress(progress)
    if getattr(net, "skips_training", lambda: False)():
        best_valid_score, best_valid_result = result["phase1"]["best_valid_score"], trainer.evaluate(
            valid_data, load_best_model=False, show_progress=show)
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=show)
    else:
        try:
            best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=saved, show_progress=show)
        except DivergenceError as error:  # the run's record says so (an ablation shows it as diverged)
            if saved:
                write_run_record(config, trainer, {"diverged": str(error)})
            raise
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=show)
    other_mask, other_result = evaluate_other_mask(
        trainer, test_data, histories, config["test_mask"] or "train_valid", show)

    environment_tb = get_environment(config)
    logger.info("The running environment of this training is as follows:\n" + environment_tb.draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result.update(
        best_valid_score=best_valid_score,
        valid_score_bigger=config["valid_metric_bigger"],
        best_valid_result=dict(best_valid_result or {}),
        test_result=dict(test_result),
        test_mask=config["test_mask"] or "train_valid",
        test_result_other_mask={"test_mask": other_mask, **other_result},
        **trainer_statistics(trainer),
        checkpoint=trainer.saved_model_file if saved else None,
        seconds=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
    )
    if saved:
        result["record"] = write_run_record(config, trainer, result)
    if queue is not None and is_writer(config):
        queue.put(result)
    return result


RECORD_KEYS = ("model", "dataset", "seed", "variant", "ablation", "semantic_init", "cl_scope", "test_mask")


def write_run_record(config, trainer, result):
    """``<best checkpoint>-result.json`` (rank 0, atomically): what the analyses read about a run: its
    settings, metrics (or divergence), checkpoint and progress file (which keeps the validation history)."""
    import json

    path = trainer.saved_model_file[: -len(".pth")] + "-result.json"
    if not is_writer(config):
        return path
    record = {"settings": {k: config[k] for k in RECORD_KEYS if k in config},
              "checkpoint": trainer.saved_model_file,
              "progress_file": getattr(trainer, "progress_file", None),
              **{k: v for k, v in result.items() if k not in ("phase1",)}}
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1, default=str)
    os.replace(partial, path)
    return path


def restart_random_streams(config, train_data):
    """Seed the global generators and the training loader's shuffling generator again (RecBole seeds both
    once), so that what follows does not depend on how many draws a step before it (phase 1) made."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    generator = getattr(train_data, "generator", None)
    if generator is not None:
        generator.manual_seed(config["seed"])


def trainer_statistics(trainer):
    """Best epoch, epochs run, the epoch budget the run had (its config's ``epochs``, wherever that was
    set), median seconds per epoch (train + validation, upper median as before) and the seconds of
    training and validation up to the end of the best epoch (Table 4's "Time")."""
    if not isinstance(trainer, HyperbolicTrainer) or not trainer.train_seconds:
        return {"best_epoch": None, "epochs": 0, "sec_per_epoch": None, "sec_to_best": None}
    return {
        "best_epoch": trainer.best_epoch,
        "epochs": len(trainer.train_seconds),
        "epoch_budget": trainer.epochs,
        "sec_per_epoch": statistics.median_high(trainer.epoch_seconds),
        "train_sec_per_epoch": statistics.median_high(trainer.train_seconds),
        "valid_sec_per_epoch": statistics.median_high(trainer.valid_seconds) if trainer.valid_seconds else None,
        "sec_to_best": trainer.seconds_to_best,
        "train_seconds": list(trainer.train_seconds),
        "valid_seconds": list(trainer.valid_seconds),
    }


def objective_function(config_dict=None, config_file_list=None, saved=True, model=None, dataset=None):
    """RecBole HyperTuning's objective, through this plugin's models and trainers.

    RecBole's own ``objective_function`` cannot be used: it builds RecBole's
    trainer (no Riemannian optimiser) and loads the best checkpoint with
    torch's ``weights_only=True`` default, which refuses RecBole's pickled Config.
    ``model``/``dataset`` come from the arguments, ``config_dict`` or the YAML files.
    """
    config_dict = dict(config_dict or {})
    model = model or config_dict.get("model") or _key_from_files(config_file_list, "model")
    dataset = dataset or config_dict.get("dataset") or _key_from_files(config_file_list, "dataset")
    result = run_recbole_hyperllm(model, dataset, config_file_list, config_dict, saved=saved)
    logging.getLogger().handlers.clear()
    return {
        "model": model,
        "best_valid_score": result["best_valid_score"],
        "valid_score_bigger": result["valid_score_bigger"],
        "best_valid_result": result["best_valid_result"],
        "test_result": result["test_result"],
    }


def _key_from_files(config_file_list, key):
    import yaml

    value = None
    for path in config_file_list or []:
        with open(path, encoding="utf-8") as handle:
            value = (yaml.safe_load(handle) or {}).get(key, value)
    if value is None:
        raise ValueError(f"no '{key}' given: pass --{key}=... or put '{key}:' in a config file")
    return value
