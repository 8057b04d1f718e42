"""HeLLM (issue 15): the stage-1 hypergraphs and loss against hand computations, the stage-2 LLM side on a tiny
randomly initialised Llama (built here, offline), the split, the cache and one run of both stages on a toy dataset."""
import math
import os

import numpy as np
import pytest
import torch

from conftest import FAST, build_model, make_synthetic

pytest.importorskip("peft")
pytest.importorskip("transformers")

WORDS = ["[UNK]", "[PAD]", "</s>", "User", ":", ".", "Watched", "in", "order", "Next"]


def make_tiny_llm(folder):
    """A 2-layer Llama (hidden 32) and a word-level tokenizer, saved in the transformers layout."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                            eos_token="</s>").save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True)  # as SmolLM2: the output layer shares the input embedding
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """RecBole reads --key=value from sys.argv: pytest's own options (--durations=5) are not config keys."""
    monkeypatch.setattr("sys.argv", ["pytest"])


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    return make_tiny_llm(str(tmp_path_factory.mktemp("tiny_llm")))


@pytest.fixture
def hellm_toy(tmp_path, tiny_llm):
    make_synthetic(str(tmp_path))
    config = dict(FAST, data_path=str(tmp_path), checkpoint_dir=str(tmp_path / "saved"), llm_path=tiny_llm,
                  pre_epochs=2, item_knn_k=3, train_batch_size=32, epochs=1, train_prefix_fraction=1.0)
    return tmp_path, config


# ----- stage 1: graphs and loss -----------------------------------------------------------------------------------
def test_user_hypergraph_incidence_and_normalisation_by_hand():
    from recbole_hyperllm.model.hellm.hypergraph import HypergraphOperator, hypergraph_factors, interest_incidence

    # users 0,1,2; items (hyperedges) 0,1: item 0 <- users 0,1; item 1 <- users 0,1,2
    users, items = np.array([0, 1, 0, 1, 2, 0]), np.array([0, 0, 1, 1, 1, 1])  # (0, 1) twice: one edge
    incidence = interest_incidence(users, items, 3, 2).toarray()
    np.testing.assert_array_equal(incidence, [[1, 1], [1, 1], [0, 1]])
    # D_v = diag(2, 2, 1), D_e = diag(2, 3): G[a, b] = sum_e H[a,e] H[b,e] / (d_e sqrt(d_a d_b))
    expected = np.array([[1 / 2 / 2 + 1 / 3 / 2, 1 / 2 / 2 + 1 / 3 / 2, 1 / 3 / math.sqrt(2)],
                         [1 / 2 / 2 + 1 / 3 / 2, 1 / 2 / 2 + 1 / 3 / 2, 1 / 3 / math.sqrt(2)],
                         [1 / 3 / math.sqrt(2), 1 / 3 / math.sqrt(2), 1 / 3]])
    left, right = hypergraph_factors(incidence)
    np.testing.assert_allclose((left @ right).toarray(), expected, rtol=1e-6)
    x = torch.randn(3, 4)
    np.testing.assert_allclose(HypergraphOperator(incidence)(x).numpy(), expected @ x.numpy(), rtol=1e-5, atol=1e-6)


def test_item_knn_hyperedges_by_hand():
    from recbole_hyperllm.model.hellm.hypergraph import knn_incidence

    # row 0 is RecBole's padding item; items 1..4 at angles 0, 10, 90, 100 degrees (cosine decides)
    angles = np.radians([0, 0, 10, 90, 100])
    text = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    text[0] = 0
    incidence = knn_incidence([text], k=2).toarray()
    # hyperedge j (column) = {j, its nearest item}: 1<->2 and 3<->4
    expected = np.zeros((5, 5))
    for members, edge in (((1, 2), 1), ((1, 2), 2), ((3, 4), 3), ((3, 4), 4)):
        expected[list(members), edge] = 1
    np.testing.assert_array_equal(incidence, expected)
    # a second source where 1 and 3 (and 2 and 4) coincide: the mean cosine of 1 with 2 is (cos 10 + 0)/2 = 0.492,
    # with 3 (cos 90 + 1)/2 = 0.5, with 4 (cos 100 + 0)/2 < 0; so edges 1 and 3 are {1, 3}, edges 2 and 4 {2, 4}
    other = np.zeros_like(text)
    other[[1, 3], 0] = 1
    other[[2, 4], 1] = 1
    mixed = knn_incidence([text, other], k=2).toarray()
    assert [mixed[:, j].nonzero()[0].tolist() for j in range(1, 5)] == [[1, 3], [2, 4], [1, 3], [2, 4]]


def test_lightgcn_operator_is_symmetric_degree_normalised():
    from recbole_hyperllm.model.hellm.hypergraph import lightgcn_operator

    matrix = lightgcn_operator(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2).toarray()
    # nodes u0 (deg 2), u1 (deg 1), i0 (deg 1), i1 (deg 2): entry 1/sqrt(d_a d_b) on every edge
    expected = np.zeros((4, 4))
    for u, i, value in ((0, 2, 1 / math.sqrt(2)), (0, 3, 1 / 2), (1, 3, 1 / math.sqrt(2))):
        expected[u, i] = expected[i, u] = value
    np.testing.assert_allclose(matrix, expected, rtol=1e-6)


def test_info_nce_against_a_loop():
    from recbole_hyperllm.model.hellm.hypergraph import info_nce

    torch.manual_seed(1)
    a, b, tau = torch.randn(5, 3), torch.randn(5, 3), 0.4
    expected = 0.0
    for k in range(5):
        cos = [float(a[k] @ b[j] / (a[k].norm() * b[j].norm())) for j in range(5)]
        expected += -math.log(math.exp(cos[k] / tau) / sum(math.exp(c / tau) for c in cos)) / 5
    assert float(info_nce(a, b, tau)) == pytest.approx(expected, rel=1e-5)


def test_stage1_loss_terms_and_gradients(toy):
    tmp_path, config = toy
    config = dict(config, item_knn_k=3)
    _, net, train = build_model(config, "HeLLM_Pretrain")
    from recbole.data.interaction import Interaction

    batch = Interaction({"user_id": torch.tensor([1, 2, 3]), "item_id": torch.tensor([1, 2, 3]),
                         "neg_item_id": torch.tensor([4, 5, 6])})
    losses = net.calculate_loss(batch)
    assert net.last_loss_names == ("rank", "reg", "hcl") and all(torch.isfinite(t) for t in losses)
    sum(losses).backward()
    assert net.user_embedding.weight.grad.abs().sum() > 0 and net.item_embedding.weight.grad.abs().sum() > 0


def test_to_moves_every_stage1_graph(toy):
    from recbole_hyperllm.graph import SparseGraph

    _, config = toy
    _, net, _ = build_model(dict(config, item_knn_k=3), "HeLLM_Pretrain")
    graphs = {name for name, value in vars(net).items() if isinstance(value, SparseGraph)}
    assert graphs == {"ui_graph", "user_hyper_left", "user_hyper_right", "item_hyper_left", "item_hyper_right"}
    net.to("meta")
    assert all(getattr(net, name).transpose.device.type == "meta" for name in graphs)


# ----- split and stage-1 cache --------------------------------------------------------------------------------------
def test_sequential_models_do_not_read_the_fixed_split():
    from dataset_tools.default_data import uses_fixed_split
    from recbole.utils import ModelType

    assert not uses_fixed_split("HeLLM", {}) and not uses_fixed_split("HeLLM_Pretrain", {})
    assert uses_fixed_split("HGCF", {})
    assert not uses_fixed_split("SASRec", {"MODEL_TYPE": ModelType.SEQUENTIAL})
    assert uses_fixed_split("BPR", {"MODEL_TYPE": ModelType.GENERAL})


def test_stage1_trains_on_the_training_part_only_and_is_cached(hellm_toy):
    from recbole.data import create_dataset, data_preparation
    from recbole_hyperllm.model.hellm.pretrain import training_pairs
    from recbole_hyperllm.model.hellm.stage1 import cache_paths, read_embeddings, run_stage1
    from recbole_hyperllm.quick_start import create_config
    import logging

    tmp_path, config = hellm_toy
    cfg = create_config("HeLLM", "toy", config_dict=dict(config, hellm_variant="stage1"))
    train, valid, test = data_preparation(cfg, create_dataset(cfg))
    users, items = training_pairs(train.dataset)
    held_out = set()
    for loader in (valid, test):
        inter = loader.dataset.inter_feat
        held_out |= set(zip(inter["user_id"].tolist(), inter["item_id"].tolist()))
    # the two held-out items are each user's last two by time (the toy's timestamps are the row order)
    assert len(held_out) == 2 * (train.dataset.user_num - 1)
    assert not held_out & set(zip(users.tolist(), items.tolist()))
    assert len(users) + len(held_out) == 334  # every interaction is in exactly one part
    logger = logging.getLogger("test")
    user, item, info = run_stage1(cfg, train.dataset, valid, logger)
    assert not info["reused"] and user.shape == (train.dataset.user_num, 64)
    paths = cache_paths(cfg, train.dataset)
    with open(paths["itememb"], encoding="utf-8") as handle:
        assert handle.readline().rstrip("\n") == "item_id:token\titem_emb:float_seq"
    assert torch.equal(read_embeddings(paths["itememb"], "item", train.dataset, "item_id"), item)
    user2, item2, info2 = run_stage1(cfg, train.dataset, valid, logger)
    assert info2["reused"] and torch.equal(user2, user) and torch.equal(item2, item)
    other = create_config("HeLLM", "toy", config_dict=dict(config, hellm_variant="stage1", hcl_weight=0.2))
    assert cache_paths(other, train.dataset)["json"] != paths["json"]  # another setting, another cache


# ----- stage 2 on the tiny LLM --------------------------------------------------------------------------------------
@pytest.fixture(params=["graph", "linear"])
def hellm_net(hellm_toy, request):
    tmp_path, config = hellm_toy
    cfg, net, train = build_model(dict(config, hellm_head=request.param), "HeLLM")
    torch.manual_seed(3)
    net.use_graph_embeddings(torch.randn_like(net.graph_user), torch.randn_like(net.graph_item))
    batch = next(iter(train))
    return cfg, net, train, batch


def test_injected_graph_embeddings_change_the_output(hellm_net):
    cfg, net, _, batch = hellm_net
    net.eval()
    with torch.no_grad():
        before = net.full_sort_predict(batch)
        net.graph_user[batch["user_id"][0]] += 1.0  # this user's graph prefix
        after_user = net.full_sort_predict(batch)
        first_item = batch["item_id_list"][0, 0]
        net.graph_item[first_item] += 1.0  # an item token
        after_item = net.full_sort_predict(batch)
    assert not torch.allclose(before[0], after_user[0])
    rows_with_item = (batch["item_id_list"] == first_item).any(1)
    rows_without = ~rows_with_item & (batch["user_id"] != batch["user_id"][0])
    assert not torch.allclose(after_user[rows_with_item], after_item[rows_with_item])
    # rows are independent: the other rows change only where the head reads g_i (graph head: item's own column)
    columns = torch.ones(before.size(1), dtype=torch.bool)
    if cfg["hellm_head"] == "graph":
        columns[first_item] = False
    torch.testing.assert_close(after_user[rows_without][:, columns], after_item[rows_without][:, columns])


def test_layout_equals_left_padded_splice_batch(hellm_net):
    from recbole_hyperllm.llm import splice_batch
    from recbole_hyperllm.model.hellm.hellm import decoder_of

    cfg, net, _, batch = hellm_net
    net.eval()
    rows, users = [], batch["user_id"][:4]
    seq, lengths = batch["item_id_list"][:4], batch["item_length"][:4]
    with torch.no_grad():
        h = net.forward(users, seq, lengths)
        for r in range(4):
            items = seq[r, : lengths[r]]
            prefix = net.user_projector(net.graph_user[users[r]]).view(net.prefix_length, net.hidden)
            tokens = net.item_projector(torch.cat([net.graph_item[items], net.id_embedding(items)], -1))
            rows.append([net.pieces[0], prefix, net.pieces[1], tokens, net.pieces[2]])
        embeds, mask = splice_batch(net.llm, net.tokenizer, rows)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        expected = decoder_of(net.llm)(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
    torch.testing.assert_close(h, expected.last_hidden_state[:, -1], rtol=1e-4, atol=1e-5)


def test_only_lora_and_the_adapters_get_gradients(hellm_net):
    _, net, _, batch = hellm_net
    net.train()
    loss = net.calculate_loss(batch)
    loss.backward()
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert with_grad == trained
    assert trained == {n for n in trained if "lora_" in n or n.split(".")[0] in
                       ("id_embedding", "item_projector", "user_projector", "head")}
    assert any("lora_B" in n and net.get_parameter(n).grad.abs().sum() > 0 for n in trained)
    assert not any(p.requires_grad for n, p in net.named_parameters() if "lora_" not in n and n.startswith("llm."))


def test_checkpoint_round_trip_without_frozen_llm_weights(hellm_net, tmp_path):
    from recbole_hyperllm.utils import get_model

    cfg, net, train, batch = hellm_net
    net.eval()
    with torch.no_grad():
        net.head.bias.add_(0.5)  # differ from a fresh model
        expected = net.full_sort_predict(batch)
    path = tmp_path / "state.pt"
    torch.save(net.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert not any(k.startswith("llm.") and "lora_" not in k for k in state)
    assert {"graph_user", "graph_item", "head.bias"} <= set(state)
    torch.manual_seed(99)
    other = get_model("HeLLM")(cfg, train.dataset).eval()
    other.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(other.full_sort_predict(batch), expected)
    with pytest.raises(RuntimeError, match="other settings"):
        other.load_state_dict({k: v for k, v in state.items() if k != "head.bias"})


def test_missing_llm_path_is_a_one_line_config_error(hellm_toy):
    from recbole_hyperllm.errors import ConfigError

    tmp_path, config = hellm_toy
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match=f"llm_path.*{missing}.*not found"):
        build_model(dict(config, llm_path=missing), "HeLLM")


def test_bad_prompt_is_a_config_error(hellm_toy):
    from recbole_hyperllm.errors import ConfigError

    _, config = hellm_toy
    with pytest.raises(ConfigError, match="hellm_prompt"):
        build_model(dict(config, hellm_prompt="no placeholders"), "HeLLM")


# ----- both stages, end to end ------------------------------------------------------------------------------------
def test_one_run_of_both_stages_and_stage1_alone(hellm_toy):
    from recbole_hyperllm.quick_start import run_recbole_hyperllm

    _, config = hellm_toy
    result = run_recbole_hyperllm("HeLLM", "toy", None, config)
    expected = {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (5, 10, 20)}
    assert set(result["test_result"]) == expected and result["epochs"] == 1
    assert not result["phase1"]["reused"] and os.path.isfile(result["checkpoint"])
    assert all(0 <= v <= 1 for v in result["test_result"].values())
    alone = run_recbole_hyperllm("HeLLM", "toy", None, dict(config, hellm_variant="stage1"))
    assert alone["phase1"]["reused"] and alone["epochs"] == 0  # the same cache, no stage-2 training
    assert set(alone["test_result"]) == expected
    # stage 1 as a general model: RecBole's general leave-one-out gives the same training pairs, so the same cache
    general = run_recbole_hyperllm("HeLLM_Pretrain", "toy", None, config)
    assert general["phase1"]["reused"] and set(general["test_result"]) == expected
