"""Phase 1 of HyperLLM (Sec. 4.2): train the MoE on the frozen backbone, once, cached on disk.

The cache key hashes everything phase 1 depends on: the backbone, the dataset
name, the training interactions, the semantic embeddings and the
hyper-parameters below. A second run with the same key loads the MoE and its
outputs instead of training again. The file is written to a temporary name and
renamed, so an interrupted run never leaves a half-written cache.
"""
import hashlib
import json
import os

import torch

from recbole_hyperllm.distributed import barrier, is_writer
from recbole_hyperllm.trainer import Phase1Trainer, save_atomically

KEY_CONFIG = (
    "embedding_size", "n_layers", "max_norm", "max_step", "init_scale", "num_experts", "meta_margin", "learner",
    "learning_rate", "weight_decay", "momentum", "train_batch_size", "meta_epochs", "meta_stopping_step",
    "seed", "valid_metric", "eval_args", "train_neg_sample_args",
)


def _tensor_digest(digest, tensor):
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())


def cache_key(config, model, train_data):
    digest = hashlib.sha256()
    settings = {k: config[k] for k in KEY_CONFIG}
    settings["backbone"] = model.backbone_class.__name__
    settings.update({k: config[k] for k in model.backbone_class.loss_config_keys})  # e.g. HRCF's alpha
    settings["dataset"] = config["dataset"]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    inter = train_data.dataset.inter_feat
    _tensor_digest(digest, inter[model.USER_ID])
    _tensor_digest(digest, inter[model.ITEM_ID])
    _tensor_digest(digest, model.user_semantic)
    _tensor_digest(digest, model.item_semantic)
    return digest.hexdigest()[:20]


def cache_path(config, model, train_data):
    directory = config["phase1_cache_dir"] or os.path.join(config["checkpoint_dir"], "phase1")
    name = f"{config['dataset']}-{model.backbone_class.__name__}-{cache_key(config, model, train_data)}.pt"
    return os.path.join(directory, name)


def read_cache(path, model, logger):
    """The cached phase-1 output with the MoE loaded into ``model``, or None when there is none; a cache that
    cannot be read (truncated, another file) is reported and recomputed, never trusted."""
    if not os.path.isfile(path):
        return None
    try:
        cached = torch.load(path, map_location=model.device, weights_only=True)
        model.moe.load_state_dict(cached["moe"])
        return cached
    except Exception as error:  # torch's error depends on how the file is broken
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        logger.warning(f"phase 1: the cache {path} cannot be read ({reason}); training phase 1 again, "
                       "the new output replaces it")
        return None


def run_phase1(config, model, train_data, valid_data, logger, show_progress=False, resume=None):
    """Train (or load) phase 1; returns (user_tangent, item_tangent, info dict). ``resume``: the checked state
    of a phase-1 progress file (``resume_from``): phase 1 continues from it unless its output is cached.

    Leaves ``model`` in phase 1 with the best MoE loaded (the caller decides what follows).
    """
    path = cache_path(config, model, train_data)
    model.enter_meta_phase()
    barrier(config)  # every rank decides on the same files (a cache is written only after all ranks trained)
    cached = read_cache(path, model, logger)
    if cached is not None:
        logger.info(f"phase 1: reusing {path}")
        return cached["user"], cached["item"], {"cache": path, "reused": True, "best_valid_score": cached["best_valid_score"]}
    trainer = Phase1Trainer(config, model)
    if resume is not None:
        trainer.resume_progress(resume)
    logger.info(f"phase 1: training the MoE (K={config['num_experts']}, m1={config['meta_margin']}) on the frozen backbone")
    best_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=show_progress)
    trainer.load_best()
    user_t, item_t = model.semantic_outputs()
    if is_writer(config):  # the ranks trained one MoE together (DDP): rank 0 keeps it
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_atomically({"moe": model.moe.state_dict(), "user": user_t.cpu(), "item": item_t.cpu(),
                         "best_valid_score": best_score}, path)
    logger.info(f"phase 1: best valid score {best_score:.4f} at epoch {trainer.best_epoch}; cached in {path}")
    return user_t, item_t, {"cache": path, "reused": False, "best_valid_score": best_score,
                            "best_epoch": trainer.best_epoch, "epochs": len(trainer.valid_history),
                            "seconds": sum(trainer.epoch_seconds), "sec_to_best": trainer.seconds_to_best}
