"""SeLLaRec (issue 16): SeLLa-Rec's three steps as a RecBole CTR model, on a tiny dataset with a tiny randomly
initialised Llama and a word-level tokenizer built here (no download, no shipped model)."""
import os

import numpy as np
import pytest
import torch

from tests.conftest import write

pytest.importorskip("peft", reason="pip install -e .[llm-local]")

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango").split()
PROMPT_WORDS = ("A user rated these movies none yet liked disliked Will the like movie Answer Yes or No Movie "
                "1990 1991 1992 1993").split()
N_USERS, N_ITEMS = 24, 20


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """RecBole reads --key=value from sys.argv: pytest's own options (--durations=5) are not config keys."""
    monkeypatch.setattr("sys.argv", ["pytest"])


def titles():
    return [f"{WORDS[k % 20].capitalize()} {WORDS[(3 * k + 1) % 20]}" for k in range(N_ITEMS)]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """A folder in the transformers layout: LlamaForCausalLM (hidden 32, 2 layers) and a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_llm")
    vocab = {w: k for k, w in enumerate(dict.fromkeys(["[PAD]", "[UNK]", *PROMPT_WORDS, *WORDS,
                                                       *[w.capitalize() for w in WORDS], "(", ")", ":", ";", ".",
                                                       "?", "<", ">", "_"]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, bos_token_id=None, eos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def make_ctr_data(root, name="toyctr", item_rows=None, seed=0):
    """Users with 8-12 rated items (ratings 1-5, timestamps), an .item file with titles and years, and a per-user
    8:1:1-like split into benchmark files."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    parts = {"train": [], "valid": [], "test": []}
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, size=rng.integers(8, 13), replace=False)
        for k, i in enumerate(items):
            part = "test" if k < 2 else "valid" if k < 4 else "train"
            parts[part].append((f"u{u}", f"i{i}", int(rng.integers(1, 6)), 1000 + 10 * k))
    header = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    for part, rows in parts.items():
        write(os.path.join(folder, f"{name}.{part}.inter"), header, rows)
    if item_rows is None:
        item_rows = [(f"i{i}", t, 1990 + i % 4) for i, t in enumerate(titles())]
    write(os.path.join(folder, f"{name}.item"), ["item_id:token", "movie_title:token_seq", "release_year:token"],
          item_rows)
    return folder


def settings(tmp_path, llm, **extra):
    return dict({"data_path": str(tmp_path), "checkpoint_dir": str(tmp_path / "saved"), "llm_path": llm,
                 "llm_layers": 0, "benchmark_filename": ["train", "valid", "test"],
                 "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"],
                              "item": ["item_id", "movie_title", "release_year"]},
                 "mf_embedding_size": 8, "projector_inner": 16, "mf_epochs": 2, "mf_batch_size": 32,
                 "llm_train_rows": 16, "train_batch_size": 8, "eval_batch_size": 64, "history_len": 3,
                 "state": "ERROR", "show_progress": False, "reproducibility": True}, **extra)


def build(tmp_path, llm, **extra):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hyperllm.model.sella import SeLLaRec
    from recbole_hyperllm.quick_start import create_config

    config = create_config("SeLLaRec", "toyctr", config_dict=settings(tmp_path, llm, **extra))
    init_seed(config["seed"], True)
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, SeLLaRec(config, train.dataset), train, valid, test


class Quiet:
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)

    warning = info


# ----- labels and prompts ---------------------------------------------------------------------------------------
def test_labels_are_rating_at_least_4_and_prompts_hold_history_titles_without_the_candidate(tmp_path, tiny_llm):
    make_ctr_data(str(tmp_path))
    config, net, train, valid, _ = build(tmp_path, tiny_llm)
    data = train.dataset
    raw = {}
    with open(tmp_path / "toyctr" / "toyctr.train.inter", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            user, item, rating, stamp = line.rstrip("\n").split("\t")
            raw[(user, item)] = (float(rating), float(stamp))
    users, items = data.inter_feat["user_id"].tolist(), data.inter_feat["item_id"].tolist()
    labels = data.inter_feat["label"].tolist()
    for u, i, y in zip(users, items, labels):
        assert y == float(raw[(data.id2token("user_id", u), data.id2token("item_id", i))][0] >= 4)
    assert "rating" not in data.inter_feat.columns
    # history: the user's 3 latest training rows, newest first, the candidate left out
    user = users[0]
    mine = sorted([(raw[(data.id2token("user_id", user), data.id2token("item_id", i))][1], i, y)
                   for u, i, y in zip(users, items, labels) if u == user], reverse=True)
    candidate = mine[0][1]
    expected = "; ".join(f"{net.titles[i]}: {'liked' if y else 'disliked'}" for _, i, y in mine[1:4])
    title = net.titles[candidate]
    assert title == f"{titles()[int(data.id2token('item_id', candidate)[1:])]} ({1990 + int(data.id2token('item_id', candidate)[1:]) % 4})"
    assert net.prompts.parts(user, candidate, with_tokens=False) == [
        f"A user rated these movies: {expected}. Will the user like the movie {title}? Answer Yes or No.\nAnswer:"]
    assert net.prompts.parts(user, candidate, with_tokens=True) == [
        "A user ", "<User_ID>", f" rated these movies: {expected}. Will the user like the movie {title} ",
        "<Item_ID>", "<Warm_ID>", "? Answer Yes or No.\nAnswer:"]


def test_a_user_without_history_gets_the_documented_fallback(tmp_path, tiny_llm):
    from recbole_hyperllm.model.sella.prompts import NO_HISTORY, PromptBook

    book = PromptBook(["", "Alpha bravo", "Charlie delta"], {1: [(1, 1)]}, history_len=5)
    assert f"rated these movies: {NO_HISTORY}. Will" in book.parts(7, 2, False)[0]   # never seen
    assert f"rated these movies: {NO_HISTORY}. Will" in book.parts(1, 1, False)[0]   # only the candidate
    assert "Alpha bravo: liked" in book.parts(1, 2, False)[0]


# ----- losses -------------------------------------------------------------------------------------------------
def test_alignment_loss_matches_an_independent_infonce():
    from recbole_hyperllm.model.sella.losses import alignment_loss

    torch.manual_seed(1)
    p, z, tau = torch.randn(5, 7), torch.randn(5, 7), 0.2
    expected = 0.0
    for i in range(5):
        sims = [float(np.dot(p[i], z[j]) / np.linalg.norm(p[i]) / np.linalg.norm(z[j])) / tau for j in range(5)]
        expected += -(sims[i] - np.log(np.sum(np.exp(sims))))
    assert alignment_loss(p, z, tau).item() == pytest.approx(expected / 5, rel=1e-5)
    assert alignment_loss(z, z, tau).item() < alignment_loss(p, z, tau).item()


def test_grouped_auc_matches_sklearn_per_user():
    from sklearn.metrics import roc_auc_score

    from recbole_hyperllm.model.sella.losses import grouped_auc

    rng = np.random.default_rng(3)
    users = rng.integers(0, 6, 80)
    scores = rng.random(80).round(1)  # ties on purpose
    labels = (rng.random(80) < 0.5).astype(float)
    labels[users == 5] = 1.0  # one user with positives only: left out
    per_user = {u: roc_auc_score(labels[users == u], scores[users == u]) for u in range(5)}
    positives = {u: labels[users == u].sum() for u in range(5)}
    result = grouped_auc(users, scores, labels)
    assert result["uauc"] == pytest.approx(np.mean(list(per_user.values())))
    assert result["gauc"] == pytest.approx(sum(positives[u] * per_user[u] for u in range(5)) / sum(positives.values()))


# ----- special tokens and trainable parameters ---------------------------------------------------------------
def test_special_tokens_replace_the_placeholder_positions_in_inputs_embeds(tmp_path, tiny_llm):
    from recbole_hyperllm.llm import splice_batch

    make_ctr_data(str(tmp_path))
    config, net, train, valid, _ = build(tmp_path, tiny_llm)
    net.attach_llm(config)
    users, items = torch.tensor([1, 2]), torch.tensor([3, 4])
    rows = net.prompt_rows(users, items, with_tokens=True)
    vectors = net.special_tokens(users, items)
    embeds, mask = splice_batch(net.llm, net.tokenizer, rows)
    table = net.llm.get_input_embeddings()
    for r in range(2):
        parts = net.prompts.parts(int(users[r]), int(items[r]), True)
        length = int(mask[r].sum())
        position = embeds.shape[1] - length
        for part in parts:
            if part.startswith("<") and part.endswith(">"):
                torch.testing.assert_close(embeds[r, position], vectors[part][r])
                position += 1
            else:
                ids = net.tokenizer(part, add_special_tokens=False, return_tensors="pt").input_ids[0]
                torch.testing.assert_close(embeds[r, position:position + len(ids)], table(ids))
                position += len(ids)
        assert position == embeds.shape[1]
    # the warm token is the LLM item embedding through the warm projection (the identity at first)
    torch.testing.assert_close(vectors["<Warm_ID>"], net.item_llm[items])


@pytest.mark.parametrize("step", ["step1", "step2", "step3"])
def test_only_the_parameters_of_each_step_get_gradients(tmp_path, tiny_llm, step):
    from recbole_hyperllm.model.sella.losses import alignment_loss

    make_ctr_data(str(tmp_path))
    config, net, train, valid, _ = build(tmp_path, tiny_llm)
    net.attach_llm(config)
    net.compute_item_embeddings()
    net.enter_step(step)
    users, items, labels = torch.tensor([1, 2, 3]), torch.tensor([3, 4, 5]), torch.tensor([1.0, 0.0, 1.0])
    if step == "step2":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net.mf_logits(users, items), labels) + \
            alignment_loss(net.projector(net.item_cf(items)), net.item_llm[items], 0.2)
    else:
        logits = net.yes_no_logits(users, items, with_tokens=step == "step3")
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss.backward()
    expected = {"step1": ("lora_",), "step2": ("user_cf.", "item_cf.", "projector."),
                "step3": ("lora_", "projector.", "warm.")}[step]
    for name, parameter in net.named_parameters():
        should = any(name.startswith(e) or (e == "lora_" and "lora_" in name) for e in expected)
        assert parameter.requires_grad == should, name
        if not should:
            assert parameter.grad is None, name
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    if step == "step3":  # both projections get gradients through the spliced tokens
        assert net.projector.net[0].weight.grad.abs().sum() > 0 and net.warm.weight.grad.abs().sum() > 0
        assert net.user_cf.weight.grad is None and net.item_cf.weight.grad is None


# ----- one run, caches, variants ----------------------------------------------------------------------------
def test_one_training_step_and_evaluation_then_the_cached_steps_are_reused(tmp_path, tiny_llm):
    from recbole_hyperllm.quick_start import run_recbole_hyperllm

    make_ctr_data(str(tmp_path))
    first = run_recbole_hyperllm("SeLLaRec", "toyctr", config_dict=settings(tmp_path, tiny_llm))
    for key in ("auc", "logloss", "gauc", "uauc"):
        assert np.isfinite(first["test_result"][key]), key
    assert 0 <= first["test_result"]["auc"] <= 1 and first["epochs"] == 1
    assert first["phase1"]["step1"]["rows_per_epoch"] == 16 and first["phase1"]["step2"]["epochs"] == 2
    checkpoint = torch.load(first["checkpoint"], weights_only=False)["state_dict"]
    assert any("lora_" in k for k in checkpoint) and "item_llm" in checkpoint
    assert not any(k.startswith("llm.") and "lora_" not in k for k in checkpoint)  # no frozen LLM weights
    caches = sorted(os.listdir(tmp_path / "saved" / "sella"))
    assert len(caches) == 2 and {c.split("-")[1] for c in caches} == {"step1", "step2"}
    # the LLM alone and the MF alone read the same caches and train nothing
    llm_only = run_recbole_hyperllm("SeLLaRec", "toyctr", config_dict=settings(tmp_path, tiny_llm,
                                                                              sella_variant="llm_only"))
    mf_only = run_recbole_hyperllm("SeLLaRec", "toyctr", config_dict=settings(tmp_path, tiny_llm,
                                                                             sella_variant="mf_only"))
    assert sorted(os.listdir(tmp_path / "saved" / "sella")) == caches
    assert llm_only["epochs"] == 0 and mf_only["epochs"] == 0
    assert mf_only["best_valid_score"] == pytest.approx(first["phase1"]["step2"]["best_valid_auc"])
    # another step-1 setting is another cache file; step 2's is reused
    run_recbole_hyperllm("SeLLaRec", "toyctr", config_dict=settings(tmp_path, tiny_llm, sella_variant="llm_only",
                                                                    lora_r=4))
    assert len(os.listdir(tmp_path / "saved" / "sella")) == 3


# ----- bad input ----------------------------------------------------------------------------------------------
def test_an_item_without_a_title_names_the_file_and_the_item(tmp_path, tiny_llm):
    from recbole_hyperllm.atomic import AtomicFileError

    rows = [(f"i{i}", "" if i == 7 else t, 1990) for i, t in enumerate(titles())]
    make_ctr_data(str(tmp_path), item_rows=rows)
    with pytest.raises(AtomicFileError, match=r"toyctr\.item: 1 item\(s\) without a 'movie_title' \(first: item_id i7\)"):
        build(tmp_path, tiny_llm)


def test_no_title_column_is_refused_before_data_is_loaded(tmp_path, tiny_llm):
    from recbole_hyperllm.atomic import AtomicFileError
    from recbole_hyperllm.quick_start import preflight

    folder = make_ctr_data(str(tmp_path))
    write(os.path.join(folder, "toyctr.item"), ["item_id:token", "release_year:token"],
          [(f"i{i}", 1990) for i in range(N_ITEMS)])
    with pytest.raises(AtomicFileError, match=r"toyctr\.item, line 1: columns \['movie_title'\] are missing"):
        preflight("SeLLaRec", "toyctr", config_dict=settings(tmp_path, tiny_llm))


def test_bad_values_are_config_errors(tmp_path, tiny_llm):
    from recbole_hyperllm.errors import ConfigError

    make_ctr_data(str(tmp_path))
    with pytest.raises(ConfigError, match="config key 'sella_variant' is 'both'; use one of"):
        build(tmp_path, tiny_llm, sella_variant="both")
    with pytest.raises(ConfigError, match="config key 'history_len' is -1; it must be an integer >= 0"):
        build(tmp_path, tiny_llm, history_len=-1)
