"""SeLLa-Rec's steps 1 and 2, run before RecBole's trainer and cached on disk (the design of HyperLLM's phase 1,
``recbole_hyperllm/phase1.py``).

Each step's output is a file ``<sella_cache_dir or checkpoint_dir/sella>/<dataset>-<step>-<key>.pt``; the key
hashes everything the step depends on: its settings (``STEP_KEYS``), the LLM path and cut, the prompt version,
and a fingerprint of the data (training users, items and labels, the item texts; step 2 also the validation rows
that select its epoch). The file is written to a temporary name and renamed (``save_atomically``), so no run reads
another configuration's output or a half-written one; a file that cannot be read is recomputed.

* step 1 (``train_step1``): LoRA yes/no fine-tuning without special tokens, ``step1_epochs`` epochs over at most
  ``llm_train_rows`` random training rows each, AdamW (``step1_learning_rate``). Output: the adapter's weights.
* step 2 (``train_step2``): the LLM item embeddings, then MF + projector with
  L = BCE(<e_u, e_i>, y) + align_weight * InfoNCE(projector(e_i), z_i) (``losses.alignment_loss``) for
  ``mf_epochs`` epochs of shuffled batches (Adam, ``mf_learning_rate``); the epoch with the best validation AUC
  is kept. Output: the MF embeddings, the projector and the item embeddings.
"""
import hashlib
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from recbole_hyperllm.model.sella.losses import alignment_loss, auc
from recbole_hyperllm.model.sella.model import training_rows
from recbole_hyperllm.model.sella.prompts import PROMPT_VERSION
from recbole_hyperllm.trainer import save_atomically

COMMON_KEYS = ("llm_path", "llm_layers", "history_len", "item_noun", "title_field", "year_field", "seed")
STEP_KEYS = {
    "step1": COMMON_KEYS + ("lora_r", "lora_alpha", "lora_dropout", "step1_epochs", "step1_learning_rate",
                            "llm_train_rows", "train_batch_size"),
    "step2": COMMON_KEYS + ("mf_embedding_size", "projector_inner", "mf_epochs", "mf_batch_size",
                            "mf_learning_rate", "mf_weight_decay", "align_weight", "align_temperature"),
}


def _digest_arrays(digest, *arrays):
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())


def cache_path(config, model, step, rows, valid_rows=None):
    """The cache file of ``step`` for this configuration and data."""
    digest = hashlib.sha256()
    settings = {k: config[k] for k in STEP_KEYS[step]}
    settings.update(step=step, dataset=config["dataset"], prompt_version=PROMPT_VERSION)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    _digest_arrays(digest, *rows[:3])
    if valid_rows is not None:
        _digest_arrays(digest, *valid_rows[:3])
    digest.update("\n".join(model.titles).encode())
    directory = config["sella_cache_dir"] or os.path.join(config["checkpoint_dir"], "sella")
    return os.path.join(directory, f"{config['dataset']}-{step}-{digest.hexdigest()[:20]}.pt")


def read_cache(path, device, logger):
    if not os.path.isfile(path):
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch's error depends on how the file is broken
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        logger.warning(f"SeLLaRec: the cache {path} cannot be read ({reason}); computing it again")
        return None


def write_cache(state, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_atomically(state, path)


def _batches(order, size):
    for start in range(0, len(order), size):
        yield order[start:start + size]


def _progress(logger, step, done, batch, total, loss, every):
    """A line at about every ``every`` rows and at the end."""
    if done == total or done // every != (done - batch) // every:
        logger.info(f"{step}: {done}/{total} rows, mean loss {loss:.4f}")


def train_step1(model, config, rows, logger):
    """LoRA yes/no tuning (TALLRec; SeLLa-Rec step 1): BCE of sigmoid(l_Yes - l_No) on the label."""
    from peft import get_peft_model_state_dict

    model.enter_step("step1")
    users, items, labels = (torch.as_tensor(a) for a in rows[:3])
    rng = np.random.default_rng(config["seed"])
    cap, size = config["llm_train_rows"] or len(users), config["train_batch_size"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config["step1_learning_rate"])
    model.train()
    seconds = []
    for epoch in range(config["step1_epochs"] or 1):
        start, total, done = time.perf_counter(), 0.0, 0
        order = rng.permutation(len(users))[:cap]
        for batch in _batches(order, size):
            index = torch.as_tensor(batch)
            u, i, y = users[index].to(model.device), items[index].to(model.device), labels[index].to(model.device)
            loss = F.binary_cross_entropy_with_logits(model.yes_no_logits(u, i, with_tokens=False), y.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            done += len(batch)
            _progress(logger, f"step 1 epoch {epoch}", done, len(batch), len(order), total / done,
                      max(size, len(order) // 10))
        seconds.append(time.perf_counter() - start)
    return {"adapter": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model.llm).items()},
            "record": {"sec_per_epoch": float(np.median(seconds)), "epochs": len(seconds), "rows_per_epoch": len(order),
                       "final_loss": total / max(done, 1)}}


@torch.no_grad()
def mf_valid_auc(model, valid_rows):
    users, items, labels = (torch.as_tensor(a).to(model.device) for a in valid_rows[:3])
    return auc(model.mf_logits(users, items).cpu().numpy(), labels.cpu().numpy())


def train_step2(model, config, rows, valid_rows, logger):
    """MF + semantic alignment (SeLLa-Rec step 2): BCE(<e_u, e_i>, y) + w InfoNCE(projector(e_i), z_i) over the
    batch's distinct items; the epoch with the best validation AUC is kept."""
    model.enter_step("step2")
    users, items, labels = (torch.as_tensor(a).to(model.device) for a in rows[:3])
    generator = torch.Generator().manual_seed(config["seed"])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config["mf_learning_rate"],
                                 weight_decay=config["mf_weight_decay"] or 0.0)
    weight, size = float(config["align_weight"]), config["mf_batch_size"]
    best = (-1.0, None, -1)
    seconds = []
    for epoch in range(config["mf_epochs"]):
        start, totals = time.perf_counter(), np.zeros(2)
        for batch in _batches(torch.randperm(len(users), generator=generator).to(model.device), size):
            u, i, y = users[batch], items[batch], labels[batch].float()
            bce = F.binary_cross_entropy_with_logits(model.mf_logits(u, i), y)
            distinct = torch.unique(i)
            align = alignment_loss(model.projector(model.item_cf(distinct)), model.item_llm[distinct],
                                   model.temperature)
            optimizer.zero_grad()
            (bce + weight * align).backward()
            optimizer.step()
            totals += (bce.item() * len(batch), align.item() * len(batch))
        seconds.append(time.perf_counter() - start)
        valid = mf_valid_auc(model, valid_rows) if valid_rows is not None else -float(epoch)
        logger.info(f"step 2 epoch {epoch}: bce {totals[0] / len(users):.4f}, align {totals[1] / len(users):.4f}, "
                    f"valid AUC {valid:.4f} ({seconds[-1]:.1f} s)")
        if valid > best[0]:
            best = (valid, {k: v.detach().clone() for k, v in _step2_state(model).items()}, epoch)
    _load_step2_state(model, best[1])
    return {"state": {k: v.cpu() for k, v in best[1].items()},
            "record": {"sec_per_epoch": float(np.median(seconds)), "epochs": len(seconds), "best_epoch": best[2],
                       "best_valid_auc": best[0]}}


def _step2_state(model):
    return {**{f"user_cf.{k}": v for k, v in model.user_cf.state_dict().items()},
            **{f"item_cf.{k}": v for k, v in model.item_cf.state_dict().items()},
            **{f"projector.{k}": v for k, v in model.projector.state_dict().items()}}


def _load_step2_state(model, state):
    for name in ("user_cf", "item_cf", "projector"):
        getattr(model, name).load_state_dict({k[len(name) + 1:]: v.to(model.device) for k, v in state.items()
                                              if k.startswith(name + ".")})


def run_steps(model, config, train_data, valid_data, logger):
    """Steps 1 and 2 as the variant needs them (from their caches when present), then the model in the state
    RecBole's trainer starts from: step 3's trainable parameters for ``full``; returns a JSON-able record."""
    rows = training_rows(config, train_data.dataset)
    valid_rows = training_rows(config, valid_data.dataset) if valid_data else None
    needs = {"full": ("step2", "step1"), "llm_only": ("step1",), "mf_only": ("step2",)}[model.variant]
    record = {"variant": model.variant, "best_valid_score": None}
    paths = {"step1": cache_path(config, model, "step1", rows),
             "step2": cache_path(config, model, "step2", rows, valid_rows)}
    cached = {step: read_cache(paths[step], model.device, logger) for step in needs}
    if model.variant != "mf_only" or cached["step2"] is None:
        model.attach_llm(config)
    if "step2" in needs:
        if cached["step2"] is not None:
            logger.info(f"step 2: reusing {paths['step2']}")
            model.build_heads(cached["step2"]["item_llm"].shape[1])
            model.item_llm = cached["step2"]["item_llm"].to(model.device)
            _load_step2_state(model, cached["step2"]["state"])
        else:
            started = time.perf_counter()
            model.compute_item_embeddings(log=logger.info)
            item_seconds = time.perf_counter() - started
            output = train_step2(model, config, rows, valid_rows, logger)
            output["record"]["item_embedding_seconds"] = item_seconds
            cached["step2"] = {"item_llm": model.item_llm.cpu(), **output}
            write_cache(cached["step2"], paths["step2"])
            logger.info(f"step 2: cached in {paths['step2']}")
        record["step2"] = dict(cached["step2"]["record"], cache=paths["step2"])
        record["best_valid_score"] = cached["step2"]["record"]["best_valid_auc"]
    if "step1" in needs:
        from peft import set_peft_model_state_dict

        if cached["step1"] is not None:
            logger.info(f"step 1: reusing {paths['step1']}")
        else:
            cached["step1"] = train_step1(model, config, rows, logger)
            write_cache(cached["step1"], paths["step1"])
            logger.info(f"step 1: cached in {paths['step1']}")
        set_peft_model_state_dict(model.llm, {k: v.to(model.device) for k, v in cached["step1"]["adapter"].items()})
        record["step1"] = dict(cached["step1"]["record"], cache=paths["step1"])
    if model.variant == "mf_only":
        model.drop_llm()
        model.enter_step("step2")
    else:
        model.enter_step("step3" if model.variant == "full" else "step1")
    return record
