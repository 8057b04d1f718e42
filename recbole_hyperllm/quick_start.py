"""One call that trains and evaluates a model of this plugin (or of RecBole), RecBole-style."""
import logging
import os
import resource
import time
from logging import getLogger

from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from dataset_tools import pipeline
from dataset_tools.common import file_fingerprint
from recbole_hyperllm import atomic
from recbole_hyperllm.default_data import use_bundled_ml100k
from recbole_hyperllm.model import HyperLLM, VariantPlan
from recbole_hyperllm.model.hyperllm.tag_data import HOW_TO_MAKE
from recbole_hyperllm.phase1 import run_phase1
from recbole_hyperllm.trainer import HyperbolicTrainer
from recbole_hyperllm.utils import get_model, get_trainer, model_property_files


def create_config(model, dataset, config_file_list=None, config_dict=None):
    """RecBole Config with the plugin's YAML defaults first, then the user's files and dict."""
    model_class = get_model(model)
    files = model_property_files(model) + list(config_file_list or [])
    config = Config(model=model_class, dataset=dataset, config_file_list=files, config_dict=config_dict)
    needs = VariantPlan.from_config(config).atomic_files() if issubclass(model_class, HyperLLM) else {}
    use_bundled_ml100k(config, structural="tag" in needs, semantic="useremb" in needs)
    if issubclass(model_class, HyperLLM):
        declare_hyperllm_files(config)
    return config


def declare_hyperllm_files(config):
    """Check the atomic files the configured HyperLLM variant reads, before any training."""
    plan = VariantPlan.from_config(config)
    needed = plan.atomic_files()
    data_path = config["data_path"]
    for path in atomic.interaction_files(data_path, config["dataset"], config["benchmark_filename"]):
        if os.path.isfile(path):
            atomic.read_header(path)
    atomic.require_files(data_path, config["dataset"], needed, f"{config['model']} (variant={config['variant']}, "
                         f"ablation={config['ablation']})", HOW_TO_MAKE)
    if plan.structural:
        atomic.check_tag_references(data_path, config["dataset"])
    if "useremb" in needed:
        check_user_summaries_split(data_path, config["dataset"], config["benchmark_filename"])
    return plan


def check_user_summaries_split(data_path, dataset, benchmark_filename):
    """User summaries made by dataset_tools must come from the training split this run uses (no leak of
    validation/test items into them)."""
    built_from = pipeline.embedded_split_fingerprint(data_path) or pipeline.users_split_fingerprint(data_path)
    if built_from is None:
        return
    train = os.path.join(data_path, f"{dataset}.train.inter")
    if not benchmark_filename or "train" not in benchmark_filename:
        raise atomic.AtomicFileError(
            f"{os.path.join(data_path, dataset)}.useremb was built from {train} by dataset_tools, but this run "
            "splits the interactions itself, so its validation/test items may be in the user summaries: set "
            "benchmark_filename: [train, valid, test]")
    if not os.path.isfile(train) or file_fingerprint(train) != built_from:
        raise atomic.AtomicFileError(
            f"{os.path.join(data_path, dataset)}.useremb was built from another training split than {train}: rerun "
            f"`python -m dataset_tools users {dataset} --out {os.path.dirname(data_path)}` and the encode stage")


TEST_MASKS = ("train_valid", "train")


def use_test_protocol(config, valid_data, test_data):
    """``test_mask: train`` masks only training items at test time (the authors' code);
    RecBole's default (``train_valid``) also masks validation items.

    Returns {mask: history} for both protocols, so the other one can be evaluated too.
    """
    mode = config["test_mask"] or "train_valid"
    if mode not in TEST_MASKS:
        raise ValueError(f"config key 'test_mask' is {mode!r}; use 'train_valid' (RecBole) or 'train' (authors)")
    histories = {"train_valid": test_data.uid2history_item, "train": valid_data.uid2history_item}
    test_data.uid2history_item = histories[mode]
    return histories


def evaluate_other_mask(trainer, test_data, histories, mode, show_progress):
    """Test metrics of the same (already loaded) model under the protocol not selected."""
    other = TEST_MASKS[1 - TEST_MASKS.index(mode)]
    test_data.uid2history_item = histories[other]
    try:
        return other, dict(trainer.evaluate(test_data, load_best_model=False, show_progress=show_progress))
    finally:
        test_data.uid2history_item = histories[mode]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def init_logger_safely(config):
    """RecBole's ``init_logger``, with its ``./log/<model>`` folders made first: RecBole checks then
    creates them, so two runs started together in one folder race and one dies (FileExistsError)."""
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    init_logger(config)


def run_recbole_hyperllm(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None):
    """Train and test ``model`` on ``dataset``; HyperLLM models run phase 1 (cached) then phase 2."""
    started = time.perf_counter()
    config = create_config(model, dataset, config_file_list, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger_safely(config)
    logger = getLogger()
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

    result = {"phase1": None}
    if isinstance(net, HyperLLM) and net.plan.two_phase:
        user_t, item_t, info = run_phase1(config, net, train_data, valid_data, logger, show_progress=show)
        result["phase1"] = info
        if not net.plan.only_phase1:
            net.initialise_id_embeddings(user_t, item_t)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if config["resume_from"]:
        if not isinstance(trainer, HyperbolicTrainer):
            raise ValueError("resume_from works with this plugin's models only")
        trainer.resume_progress(config["resume_from"])
    if isinstance(net, HyperLLM) and net.plan.only_phase1:
        best_valid_score, best_valid_result = result["phase1"]["best_valid_score"], trainer.evaluate(
            valid_data, load_best_model=False, show_progress=show)
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=show)
    else:
        best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=saved, show_progress=show)
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
        seconds=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
    )
    if queue is not None:
        queue.put(result)
    return result


def trainer_statistics(trainer):
    if not isinstance(trainer, HyperbolicTrainer) or not trainer.train_seconds:
        return {"best_epoch": None, "epochs": 0, "sec_per_epoch": None}
    epochs = len(trainer.train_seconds)
    per_epoch = [t + v for t, v in zip(trainer.train_seconds, trainer.valid_seconds + [0.0] * epochs)]
    per_epoch.sort()
    return {
        "best_epoch": trainer.best_epoch,
        "epochs": epochs,
        "sec_per_epoch": per_epoch[len(per_epoch) // 2],
        "train_sec_per_epoch": sorted(trainer.train_seconds)[epochs // 2],
        "valid_sec_per_epoch": sorted(trainer.valid_seconds)[len(trainer.valid_seconds) // 2] if trainer.valid_seconds else None,
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
