"""HeLLM stage 1, trained once per configuration and data and cached as atomic files (the idea of HyperLLM's phase-1
cache, ``recbole_hyperllm/phase1.py``).

The key hashes everything the output depends on: the stage-1 keys below, the dataset name, the training
interactions (user and item tokens of every pair), and the bytes of the item feature files. The output is two
RecBole atomic files in the format of ``.useremb``/``.itememb`` (``user_id:token  user_emb:float_seq``, 9
significant digits, so float32 values come back exactly) and a JSON record, in
``<pre_cache_dir or checkpoint_dir/hellm_stage1>/<dataset>-HeLLM_Pretrain-<key>.{useremb,itememb,json}``; each is
written under a temporary name and renamed, the record last, so a run reads a cache only when all three are whole.

Training: Adam over mini-batches of (user, positive, uniformly drawn negative that the user did not interact with
in training), ``pre_epochs`` at most, early stopping after ``pre_stopping_step`` epochs without a better validation
score, the best epoch's output kept. Validation score: hit@10 + NDCG@10 of each validation interaction's item among
all items, the user's training items masked (the general-model protocol).
"""
import hashlib
import json
import os
import time

import numpy as np
import scipy.sparse as sp
import torch
from recbole.data.interaction import Interaction

from recbole_hyperllm.atomic import read_columns
from recbole_hyperllm.errors import DivergenceError, integer
from recbole_hyperllm.model.hellm.pretrain import HeLLM_Pretrain, feature_suffixes, training_pairs

KEY_CONFIG = ("pre_embedding_size", "pre_layers", "hyper_layers", "item_knn_k", "item_feature_files", "hcl_temperature",
              "hcl_weight", "pre_reg_weight", "pre_learning_rate", "pre_batch_size", "pre_epochs", "pre_stopping_step",
              "seed")
FIELDS = {"user": ("USER_ID_FIELD", "user_emb"), "item": ("ITEM_ID_FIELD", "item_emb")}


def _file_digest(digest, path):
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def cache_key(config, dataset):
    """sha256 (20 hex digits) of the stage-1 settings, dataset name, training pairs as tokens, item feature files."""
    digest = hashlib.sha256()
    settings = {k: config[k] for k in KEY_CONFIG}
    settings["dataset"] = config["dataset"]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    users, items = training_pairs(dataset)
    user_tokens = dataset.field2id_token[config["USER_ID_FIELD"]]
    item_tokens = dataset.field2id_token[config["ITEM_ID_FIELD"]]
    pairs = sorted(zip(user_tokens[users].tolist(), item_tokens[items].tolist()))
    digest.update(json.dumps(pairs).encode())
    digest.update(json.dumps(item_tokens.tolist()).encode())  # which items get a row
    for suffix in feature_suffixes(config):
        _file_digest(digest, os.path.join(dataset.dataset_path, f"{dataset.dataset_name}.{suffix}"))
    return digest.hexdigest()[:20]


def cache_paths(config, dataset):
    """{'useremb', 'itememb', 'json'}: the cache files of this configuration and data."""
    folder = config["pre_cache_dir"] or os.path.join(config["checkpoint_dir"], "hellm_stage1")
    stem = os.path.join(folder, f"{config['dataset']}-HeLLM_Pretrain-{cache_key(config, dataset)}")
    return {kind: f"{stem}.{kind}" for kind in ("useremb", "itememb", "json")}


def write_embeddings(path, kind, tokens, table):
    """An atomic file ``<kind>_id:token  <kind>_emb:float_seq`` of ``table`` rows 1.. (row 0 is RecBole's padding),
    written under a temporary name and renamed."""
    from dataset_tools.common import write_atomic_file

    rows = ((token, " ".join(f"{x:.9g}" for x in row)) for token, row in zip(tokens[1:], table[1:].tolist()))
    write_atomic_file(path, [f"{kind}_id:token", f"{kind}_emb:float_seq"], rows)


def read_embeddings(path, kind, dataset, field):
    """(n, d) tensor in the dataset's id order from a file of ``write_embeddings``; a token of the dataset missing
    from the file raises ValueError."""
    columns = read_columns(path, [f"{kind}_id", f"{kind}_emb"])
    index = {token: row for row, token in enumerate(columns[f"{kind}_id"])}
    tokens = dataset.field2id_token[field]
    rows = [index[token] for token in tokens[1:]]
    values = torch.from_numpy(columns[f"{kind}_emb"][rows])
    return torch.cat([torch.zeros(1, values.size(1)), values])


def read_cache(paths, config, dataset, logger):
    """(user, item, record) from the cache, or None; an unreadable cache is reported and recomputed."""
    if not all(os.path.isfile(p) for p in paths.values()):
        return None
    try:
        with open(paths["json"], encoding="utf-8") as handle:
            record = json.load(handle)
        user = read_embeddings(paths["useremb"], "user", dataset, config["USER_ID_FIELD"])
        item = read_embeddings(paths["itememb"], "item", dataset, config["ITEM_ID_FIELD"])
        return user, item, record
    except Exception as error:  # a truncated or foreign file: the reason depends on how it is broken
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        logger.warning(f"HeLLM stage 1: the cache {paths['json']} cannot be read ({reason}); training stage 1 again")
        return None


def write_cache(paths, dataset, config, user, item, record):
    os.makedirs(os.path.dirname(paths["json"]), exist_ok=True)
    for kind, table in (("user", user), ("item", item)):
        field, _ = FIELDS[kind]
        write_embeddings(paths[f"{kind}emb"], kind, dataset.field2id_token[config[field]], table.cpu())
    partial = f"{paths['json']}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    os.replace(partial, paths["json"])  # last: the record marks a whole cache


def validation_pairs(valid_data, config):
    """(users, items) of the validation interactions (general or sequential loader), or None without any."""
    if valid_data is None:
        return None
    inter = valid_data.dataset.inter_feat
    return inter[config["USER_ID_FIELD"]].long(), inter[config["ITEM_ID_FIELD"]].long()


def validation_score(user, item, pairs, train_matrix, k=10):
    """hit@k + NDCG@k of each validation pair's item among all items, training items of the user and the padding
    item masked: sum over pairs of 1[r < k] (1 + 1/log2(r + 2)) / n_pairs, r the 0-based rank."""
    users, targets = pairs
    scores = user[users] @ item.T
    history = torch.from_numpy(train_matrix[users.numpy()].toarray() > 0)
    scores = scores.masked_fill(history, -torch.inf)
    scores[:, 0] = -torch.inf
    rank = (scores > scores.gather(1, targets.view(-1, 1))).sum(1)
    hit = (rank < k).float()
    return float((hit + hit / torch.log2(rank.float() + 2)).mean())


def sample_batches(users, items, n_items, train_matrix, batch_size, generator):
    """Shuffled (user, positive, negative) batches; each negative is drawn uniformly from items 1.. and drawn again
    (up to 10 times) while the user has it in training."""
    seen = torch.from_numpy(np.sort(users.numpy() * n_items + items.numpy()))
    order = torch.randperm(len(users), generator=generator)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        u, pos = users[rows], items[rows]
        neg = torch.randint(1, n_items, (len(rows),), generator=generator)
        for _ in range(10):
            clash = torch.isin(u * n_items + neg, seen)
            if not clash.any():
                break
            neg[clash] = torch.randint(1, n_items, (int(clash.sum()),), generator=generator)
        yield u, pos, neg


def train_stage1(config, model, valid_pairs, logger, show_progress=False):
    """Train ``model`` (a HeLLM_Pretrain) on its training pairs; returns (best user, best item, record)."""
    epochs, patience, batch_size = (integer(config, key, 1) for key in ("pre_epochs", "pre_stopping_step", "pre_batch_size"))
    users, items = torch.from_numpy(model.train_users), torch.from_numpy(model.train_items)
    train_matrix = sp.csr_matrix((np.ones(len(users)), (model.train_users, model.train_items)),
                                 shape=(model.n_users, model.n_items))
    generator = torch.Generator().manual_seed(int(config["seed"]))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config["pre_learning_rate"])
    best = (-np.inf, None, None, -1)
    started, history = time.perf_counter(), []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for u, pos, neg in sample_batches(users, items, model.n_items, train_matrix, batch_size, generator):
            batch = Interaction({model.USER_ID: u, model.ITEM_ID: pos, model.NEG_ITEM_ID: neg}).to(model.device)
            loss = sum(model.calculate_loss(batch))
            if not torch.isfinite(loss):
                raise DivergenceError(f"HeLLM stage 1: loss is {loss.item()} at epoch {epoch}; lower pre_learning_rate")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            user, item, _, _ = model.forward()
            score = validation_score(user.cpu(), item.cpu(), valid_pairs, train_matrix) if valid_pairs else -total
        history.append(score)
        if score > best[0]:
            best = (score, user.detach().cpu().clone(), item.detach().cpu().clone(), epoch)
        if show_progress or epoch % 10 == 0 or epoch == epochs - 1:
            logger.info(f"HeLLM stage 1: epoch {epoch} loss {total:.4f} valid hit@10+ndcg@10 {score:.4f} "
                        f"(best {best[0]:.4f} at epoch {best[3]})")
        if epoch - best[3] >= patience:
            break
    record = {"best_valid_score": best[0], "best_epoch": best[3], "epochs": len(history),
              "seconds": time.perf_counter() - started, "valid_history": history}
    return best[1], best[2], record


def run_stage1(config, dataset, valid_data, logger, model=None, show_progress=False):
    """(user (n_users, d), item (n_items, d), info) of stage 1 on the training interactions of ``dataset``: read from
    the cache when this configuration and data ran before, else trained (``model``, or a new HeLLM_Pretrain seeded
    with ``seed`` without touching the global random streams) and cached."""
    paths = cache_paths(config, dataset)
    cached = read_cache(paths, config, dataset, logger)
    if cached is not None:
        logger.info(f"HeLLM stage 1: reusing {paths['json']}")
        user, item, record = cached
        return user, item, {"cache": paths["json"], "reused": True, "best_valid_score": record["best_valid_score"]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config["seed"]))
        if model is None:
            model = HeLLM_Pretrain(config, dataset).to(config["device"])
        else:  # the standalone model: start from the same seeded initialisation as inside HeLLM
            model.user_embedding.reset_parameters()
            model.item_embedding.reset_parameters()
            torch.nn.init.xavier_uniform_(model.user_embedding.weight)
            torch.nn.init.xavier_uniform_(model.item_embedding.weight)
        logger.info(f"HeLLM stage 1: training (d={model.dim}, LightGCN layers {model.layers}, hypergraph layers "
                    f"{model.hyper_layers}, item kNN k={config['item_knn_k']} over {feature_suffixes(config)})")
        user, item, record = train_stage1(config, model, validation_pairs(valid_data, config), logger, show_progress)
    write_cache(paths, dataset, config, user, item, record)
    logger.info(f"HeLLM stage 1: best valid score {record['best_valid_score']:.4f} at epoch {record['best_epoch']}; "
                f"embeddings written to {paths['useremb']} and {paths['itememb']}")
    # the files are what a later run reads: return the same rounded values
    user = read_embeddings(paths["useremb"], "user", dataset, config["USER_ID_FIELD"])
    item = read_embeddings(paths["itememb"], "item", dataset, config["ITEM_ID_FIELD"])
    return user, item, {"cache": paths["json"], "reused": False, **record}
