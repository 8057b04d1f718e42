"""The framework layer: every framework over every backbone (the contract), the backbone interface, the
declarations that drive look-up, and the KAR / RLMRec formulas against independent computations."""
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import ROOT
from recbole_hyperllm.errors import ConfigError
from recbole_hyperllm.model import BACKBONES, FRAMEWORK_MODELS, FRAMEWORKS
from recbole_hyperllm.model.hyperbolic.interface import BACKBONE_INTERFACE, Backbone
from recbole_hyperllm.model.rlmrec import cosine_infonce, masked_cosine_infonce
from recbole_hyperllm.quick_start import create_config, run_recbole_hyperllm
from recbole_hyperllm.utils import get_model, get_trainer, model_property_files

# embedding_size 32: room for KAR's default 24 adaptor columns next to the ID columns
CONTRACT = {"embedding_size": 32, "num_neg": 3, "learning_rate": 0.01}


def build(toy, model, **extra):
    _, config = toy
    config = create_config(model, "toy", config_dict=dict(config, **CONTRACT, **extra))
    init_seed(config["seed"], True)
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, get_model(model)(config, train.dataset), train, valid


@pytest.mark.parametrize("model", sorted({**BACKBONES, **FRAMEWORK_MODELS}))
def test_contract_one_step_and_evaluation(toy, model):
    """Any model of the backbone interface (backbone or framework x backbone; the LLM recommenders HeLLM and
    SeLLaRec have their own tests): its declared step before training, then one training
    step gives finite scalar terms whose gradient reaches exactly the parameters left trainable, and
    full-ranking scores are finite."""
    config, net, train, valid = build(toy, model)
    net.before_training(config, train, valid, logging.getLogger("test"))
    net.zero_grad(set_to_none=True)  # what that step trained keeps its last gradient
    net.begin_epoch(0)
    batch = next(iter(train))
    losses = net.calculate_loss(batch)
    assert len(losses) == len(net.last_loss_names) >= 1 and net.last_loss_names[0] == "rank"
    assert all(term.dim() == 0 and torch.isfinite(term) for term in losses)
    sum(losses).backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert trainable
    for name, param in net.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, f"{model}: no gradient reaches {name}"
        else:
            assert param.grad is None, f"{model}: frozen {name} got a gradient"
    net.eval()
    scores = net.full_sort_predict(batch)
    assert scores.shape == (len(batch) * net.n_items,) and torch.isfinite(scores).all()


def test_every_framework_is_composed_with_every_backbone():
    assert set(FRAMEWORK_MODELS) == {f"{f}_{b}" for f in FRAMEWORKS for b in BACKBONES}
    assert {"HyperLLM", "KAR", "RLMRecCon", "RLMRecGen"} <= set(FRAMEWORKS)
    for name, cls in FRAMEWORK_MODELS.items():
        assert cls.__name__ == name and cls.backbone_class is BACKBONES[name.split("_", 1)[1]]


FRAMEWORK_SOURCES = ["recbole_hyperllm/model/framework/base.py", "recbole_hyperllm/phase1.py",
                     *(str(p.relative_to(ROOT)) for p in Path(ROOT, "recbole_hyperllm/model").glob("*/*.py")
                       if p.parent.name not in ("hyperbolic", "framework"))]


@pytest.mark.parametrize("source", sorted(set(FRAMEWORK_SOURCES)))
def test_frameworks_use_only_the_declared_backbone_interface(source):
    used = set(re.findall(r"backbone\.(\w+)", Path(ROOT, source).read_text()))
    assert used <= BACKBONE_INTERFACE, f"{source} uses {sorted(used - BACKBONE_INTERFACE)} of the backbone"


def test_every_backbone_implements_the_interface(toy):
    for name in BACKBONES:
        _, net, _, _ = build(toy, name)
        assert isinstance(net, Backbone), name


def test_lookup_trainer_and_yaml_go_by_declarations():
    from recbole.trainer import Trainer

    from recbole_hyperllm.trainer import HyperbolicTrainer

    names = [Path(f).name for f in model_property_files("KAR_HGCH")]
    assert names == ["overall.yaml", "HGCH.yaml", "KAR.yaml"]
    assert [Path(f).name for f in model_property_files("HyperLLM_HICF")][:4] == ["overall.yaml", "HICF.yaml",
                                                                                "HyperLLM.yaml"][:4]
    assert [Path(f).name for f in model_property_files("HyperCL")] == ["overall.yaml", "HyperCL.yaml"]
    assert model_property_files("BPR") == []  # RecBole's own models keep RecBole's defaults
    assert get_trainer("GENERAL", "RLMRecGen_HRCF") is HyperbolicTrainer
    assert issubclass(get_trainer(None, "BPR"), Trainer) and not issubclass(get_trainer(None, "BPR"), HyperbolicTrainer)


def test_hyperllm_over_hgch_sums_its_ranking_loss_as_the_authors_run_while_hgch_alone_averages(toy):
    """properties/model/HyperLLM_HGCH.yaml: Eq. 14's and Eq. 16's weights are set against a summed Eq. 6."""
    assert [Path(f).name for f in model_property_files("HyperLLM_HGCH")] == [
        "overall.yaml", "HGCH.yaml", "HyperLLM.yaml", "HyperLLM_HGCH.yaml"]
    for model, reduction in (("HGCH", "mean"), ("KAR_HGCH", "mean"), ("HyperLLM_HGCH", "sum")):
        _, net, _, _ = build(toy, model)
        backbone = getattr(net, "backbone", net)
        assert backbone.loss_reduction == reduction, model


@pytest.mark.parametrize("model", ["KAR_HGCF", "RLMRecCon_HGCF", "RLMRecGen_HGCF"])
def test_two_epoch_run_of_each_competitor_reports_metrics(toy, model):
    _, config = toy
    result = run_recbole_hyperllm(model, "toy", config_dict=dict(config, **CONTRACT))
    assert set(result["test_result"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert result["epochs"] == 2 and result["sec_to_best"] > 0
    assert result["epoch_budget"] == config["epochs"] == 2  # the budget the run had, recorded by the run


@pytest.mark.parametrize("model,key,value", [
    ("KAR_HGCF", "kar_dim", 31), ("KAR_HGCF", "kar_dim", 0), ("RLMRecGen_HGCF", "mask_ratio", 1.5),
    ("RLMRecGen_HGCF", "re_temperature", 0), ("RLMRecCon_HGCF", "kd_temperature", -1.0),
    ("HyperLLM_HGCF", "cl_scope", "everything"), ("HyperLLM_HGCF", "variant", "Full"),
])
def test_bad_framework_value_names_the_key(toy, model, key, value):
    with pytest.raises(ConfigError, match=f"config key '{key}' is"):
        build(toy, model, **{key: value})


# ----- KAR -------------------------------------------------------------------------------------------

def test_kar_input_width_and_adaptor_match_direct_computation(toy):
    config, net, train, _ = build(toy, "KAR_HGCF", kar_dim=12, kar_specific_experts=3, kar_shared_experts=2,
                                  kar_max_norm=0)
    assert net.backbone.user_embedding.shape == (net.n_users, 32 - 12)
    inputs = net.node_inputs()
    assert inputs.shape == (net.n_users + net.n_items, 32)
    ids = torch.cat(net.backbone.id_tangent())
    torch.testing.assert_close(inputs[:, :20], ids)
    # tower 1 (items) by hand: softmax gate over 2 shared + 3 item experts, each Linear-ReLU-Linear
    s = net.item_semantic
    gate = torch.softmax(s @ net.adaptor.gates[1].weight.t() + net.adaptor.gates[1].bias, dim=-1)
    experts = list(net.adaptor.shared) + list(net.adaptor.specific[1])
    assert gate.shape[1] == len(experts) == 5

    def mlp(e, x):
        hidden = torch.relu(x @ e[0].weight.t() + e[0].bias)
        return hidden @ e[2].weight.t() + e[2].bias

    direct = sum(gate[:, k:k + 1] * mlp(e, s) for k, e in enumerate(experts))
    torch.testing.assert_close(inputs[net.n_users:, 20:], direct)
    # the ID part keeps the hyperboloid's tangent convention (time coordinate 0)
    assert inputs[:, 0].abs().max() == 0


def test_kar_clips_the_adaptor_output_to_kar_max_norm(toy):
    _, net, _, _ = build(toy, "KAR_HGCF", kar_dim=12, kar_max_norm=0)
    _, clipped, _, _ = build(toy, "KAR_HGCF", kar_dim=12, kar_max_norm=0.25)
    z = net.adaptor.tower(net.ITEM_TOWER, net.item_semantic)
    zc = clipped.adaptor.tower(clipped.ITEM_TOWER, clipped.item_semantic)
    torch.testing.assert_close(z, zc)  # same seed, same adaptor
    got = clipped.node_inputs()[clipped.n_users:, 20:]
    norm = z.norm(dim=1)
    assert (norm > 0.25).any() and (norm < 0.25).any()
    long, short = norm > 0.25, norm <= 0.25
    torch.testing.assert_close(got[short], z[short])                       # short rows untouched
    torch.testing.assert_close(got[long].norm(dim=1), torch.full_like(norm[long], 0.25))
    cosine = torch.nn.functional.cosine_similarity(got[long], z[long], dim=1)
    torch.testing.assert_close(cosine, torch.ones_like(cosine))            # same direction


# ----- RLMRec ----------------------------------------------------------------------------------------

def test_cosine_infonce_matches_a_direct_sum():
    torch.manual_seed(0)
    a, t, c = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 5 - 1, dtype=torch.float64), \
        torch.randn(6, 4, dtype=torch.float64)
    tau = 0.3

    def cos(x, y):
        return float(x @ y) / math.sqrt(float(x @ x) + 1e-8) / math.sqrt(float(y @ y) + 1e-8)

    direct = sum(-cos(a[i], t[i]) / tau + math.log(sum(math.exp(cos(a[i], c[j]) / tau) for j in range(6)))
                 for i in range(3))
    assert cosine_infonce(a, t, c, tau).item() == pytest.approx(direct, rel=1e-6)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    direct = sum(-math.log(math.exp(cos(x[m], y[m]) / tau) / sum(math.exp(cos(x[m], y[k]) / tau) for k in range(5)))
                 for m in range(5)) / 5
    assert masked_cosine_infonce(x, y, tau).item() == pytest.approx(direct, rel=1e-6)


def test_rlmrec_con_term_matches_its_definition(toy):
    config, net, train, _ = build(toy, "RLMRecCon_HGCF", kd_weight=0.5)
    batch = next(iter(train))
    out = net.forward()
    term = net.framework_losses(None, out, batch, None)["con"]
    rep = net.manifold.logmap0(out)
    users, pos, neg = batch[net.USER_ID], batch[net.ITEM_ID], batch[net.NEG_ITEM_ID]
    prof_u, prof_i = net.mlp(net.user_semantic), net.mlp(net.item_semantic)
    expected = 0.5 * (cosine_infonce(rep[users], prof_u[users], prof_u[1:], 0.2)
                      + cosine_infonce(rep[net.n_users + pos], prof_i[pos], prof_i[pos], 0.2)
                      + cosine_infonce(rep[net.n_users + neg], prof_i[neg], prof_i[neg], 0.2))
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)


def test_rlmrec_con_term_is_the_same_with_and_without_grouping_repeated_rows(toy, monkeypatch):
    """On the CPU the batch's repeated users and items are grouped (``grouped``); on an accelerator they are
    not: same value, same gradient of every parameter."""
    from recbole_hyperllm.model.rlmrec import rlmrec

    config, net, train, _ = build(toy, "RLMRecCon_HGCF", kd_weight=0.5)
    batch = next(iter(train))
    assert len(torch.unique(batch[net.USER_ID])) < len(batch)  # the toy batch repeats users
    results = []
    for group in (rlmrec.grouped, lambda ids: (ids, None)):
        monkeypatch.setattr(rlmrec, "grouped", group)
        net.zero_grad()
        term = net.framework_losses(None, net.forward(), batch, None)["con"]
        term.backward()
        results.append((term.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
    (grouped_value, grouped_grads), (plain_value, plain_grads) = results
    torch.testing.assert_close(grouped_value, plain_value)
    assert set(grouped_grads) == set(plain_grads) and grouped_grads
    for name in plain_grads:
        torch.testing.assert_close(grouped_grads[name], plain_grads[name], msg=name)


def test_grouped_cosine_infonce_equals_the_sum_over_repeated_rows(monkeypatch):
    """Counts as row weights and log-count column offsets: value and gradients of the repeated-rows sum."""
    from recbole_hyperllm.model.rlmrec import rlmrec

    monkeypatch.setattr(rlmrec, "LSE_CHUNK", 2)  # several chunks, the last one partial
    torch.manual_seed(4)
    a, t, c = (torch.randn(n, 4, dtype=torch.float64, requires_grad=True) for n in (5, 5, 7))
    anchor_ids, candidate_ids = torch.tensor([0, 2, 2, 4, 0, 0]), torch.tensor([1, 1, 3, 6, 6, 6, 0])
    plain = rlmrec.cosine_infonce_reference(a[anchor_ids], t[anchor_ids], c[candidate_ids], 0.3)
    (rows, row_counts), (columns, column_counts) = rlmrec.grouped(anchor_ids), rlmrec.grouped(candidate_ids)
    assert row_counts.tolist() == [3, 2, 1] and column_counts.tolist() == [1, 2, 1, 3]
    fused = rlmrec.cosine_infonce(a[rows], t[rows], c[columns], 0.3, row_counts, column_counts)
    torch.testing.assert_close(fused, plain)
    for mine, theirs in zip(torch.autograd.grad(fused, (a, t, c)), torch.autograd.grad(plain, (a, t, c))):
        torch.testing.assert_close(mine, theirs)


def test_rlmrec_gen_masks_real_nodes_with_the_token_and_scores_them(toy):
    config, net, train, _ = build(toy, "RLMRecGen_HGCF", mask_ratio=0.25, recon_weight=0.3)
    n = net.n_users + net.n_items
    with torch.no_grad():
        net.mask_token.fill_(0.05)
    inputs, masked = net.training_inputs()
    assert masked.numel() == int((n - 2) * 0.25) == masked.unique().numel()
    assert not torch.isin(masked, torch.tensor([0, net.n_users])).any()  # padding rows are never masked
    clean = net.node_inputs()
    kept = torch.ones(n, dtype=torch.bool)
    kept[masked] = False
    torch.testing.assert_close(inputs[kept], clean[kept])
    assert torch.all(inputs[masked] == 0.05)
    batch = next(iter(train))
    out = net.backbone.propagate(inputs, net.backbone.ui_graph)
    term = net.framework_losses(inputs, out, batch, masked)["gen"]
    semantic = torch.cat([net.user_semantic, net.item_semantic])[masked]
    expected = 0.3 * len(batch) * masked_cosine_infonce(net.mlp(net.manifold.logmap0(out[masked])), semantic, 0.2)
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)


# ----- state driven by the trainer's epoch -----------------------------------------------------------

def test_hypercl_views_depend_on_seed_and_epoch_only(toy):
    _, first, _, _ = build(toy, "HyperCL")
    _, second, _, _ = build(toy, "HyperCL")
    first.begin_epoch(3)
    second.begin_epoch(3)
    a, b = first.ssl_graphs(), second.ssl_graphs()
    assert first.ssl_graphs() is a  # one draw per epoch
    torch.testing.assert_close(a[0].to_dense(), b[0].to_dense())
    second.begin_epoch(4)
    assert not torch.equal(a[0].to_dense(), second.ssl_graphs()[0].to_dense())


def test_tag_sampler_state_travels_with_the_checkpoint(toy):
    _, net, _, _ = build(toy, "HyperLLM_HGCF", semantic_init="moe", variant="Structural")
    net.begin_epoch(0)
    net.tag_sampler.next_batch()
    saved = net.other_parameter()
    expected = [net.tag_sampler.next_batch() for _ in range(3)]
    _, other, _, _ = build(toy, "HyperLLM_HGCF", semantic_init="moe", variant="Structural")
    other.load_other_parameter(saved)
    for want in expected:
        for got, w in zip(other.tag_sampler.next_batch(), want):
            assert torch.equal(got, w)


@pytest.mark.parametrize("passes", [1, 2])
def test_an_epoch_of_tag_batches_covers_every_tag_edge_passes_times(passes):
    """tag_edge_passes=2 is the authors' batch size (count_nonzero of the symmetric adjacency / batches)."""
    from collections import Counter

    import numpy as np

    from recbole_hyperllm.model.hyperllm.sampler import TagTripleSampler

    parent, child = np.array([1, 1, 2, 2, 3, 3]), np.array([2, 3, 4, 5, 6, 7])  # 6 tag-tag edges, tags 1..7
    link_tags, link_items = np.repeat(np.arange(1, 7), 2), np.arange(1, 13)      # 12 tag-item edges, items 1..12
    sampler = TagTripleSampler(parent, child, link_tags, link_items, 8, 13, batches_per_epoch=3, seed=5,
                               passes=passes)
    seen = Counter()
    for _ in range(2):  # two epochs: each starts a fresh permutation and covers every edge `passes` times
        sampler.begin_epoch()
        epoch = Counter()
        for _ in range(3):
            anchors, positives, negatives = sampler.next_batch()
            assert len(anchors) == passes * (2 + 4)  # ceil(passes * 6 / 3) + ceil(passes * 12 / 3)
            epoch.update(zip(anchors.tolist(), positives.tolist()))
            linked = set(zip(anchors.tolist(), positives.tolist()))
            assert not any((a, n) in linked for a, n in zip(anchors.tolist(), negatives.tolist()))
        edges = set(zip(parent.tolist(), child.tolist())) | {(t, i + 8) for t, i in zip(link_tags, link_items)}
        assert set(epoch) == edges and set(epoch.values()) == {passes}
        seen.update(epoch)
    assert set(seen.values()) == {2 * passes}


def test_the_training_core_does_not_import_the_llm_pipeline():
    import subprocess
    import sys

    code = ("import sys, recbole_hyperllm.quick_start, recbole_hyperllm.utils; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dataset_tools', 'openai', "
            "'sentence_transformers')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize("name,suggestion", [("hgcf", "HGCF"), ("HyperLLM_HGFC", "HyperLLM_HGCF"), ("NoSuchModel", None)])
def test_unknown_model_name_is_one_config_error_with_suggestions(name, suggestion):
    with pytest.raises(ConfigError, match=f"unknown model '{name}'") as caught:
        get_model(name)
    message = str(caught.value)
    assert (suggestion in message.split("?")[0]) if suggestion else "did you mean" not in message


def test_recbole_own_model_runs_through_the_plugin_with_recbole_defaults(toy):
    """RecBole's BPR: RecBole's trainer and metrics (none of the plugin's YAML), its best checkpoint loaded."""
    tmp_path, _ = toy
    result = run_recbole_hyperllm("BPR", "toy", config_dict={
        "data_path": str(tmp_path), "checkpoint_dir": str(tmp_path / "saved"), "epochs": 1, "show_progress": False,
        "state": "ERROR"})
    assert "mrr@10" in result["test_result"] and "recall@20" not in result["test_result"]


@pytest.mark.parametrize("model,term", [("RLMRecCon_HGCH", "con"), ("RLMRecGen_HGCH", "gen")])
def test_rlmrec_terms_follow_the_backbone_loss_reduction(toy, model, term):
    """HGCH averages its ranking loss (hgch_loss_mean): RLMRec's terms are then batch means too, a 1/B of the
    summed form, so neither term outweighs the ranking loss by the batch size."""
    torch.manual_seed(0)
    _, mean_net, train, _ = build(toy, model, hgch_loss_mean=True)
    torch.manual_seed(0)
    _, sum_net, _, _ = build(toy, model, hgch_loss_mean=False)
    assert (mean_net.backbone.loss_reduction, sum_net.backbone.loss_reduction) == ("mean", "sum")
    batch = next(iter(train))
    values = []
    for net in (mean_net, sum_net):
        torch.manual_seed(1)
        inputs, context = net.training_inputs()
        out = net.backbone.propagate(inputs, net.backbone.ui_graph)
        values.append(net.framework_losses(inputs, out, batch, context)[term].item())
    assert values[0] == pytest.approx(values[1] / len(batch), rel=1e-5)


@pytest.mark.parametrize("rows, candidates", [(300, 300), (70, 1500)])
def test_chunked_cosine_infonce_equals_autograd_on_the_whole_matrix(rows, candidates, monkeypatch):
    """RLMRec-Con's log-sum-exp in row chunks with its gradient formed in one pass: same value and gradients."""
    from recbole_hyperllm.model.rlmrec import rlmrec

    monkeypatch.setattr(rlmrec, "LSE_CHUNK", 64)  # several chunks, the last one partial

    torch.manual_seed(3)
    inputs = [torch.randn(rows, 6, dtype=torch.float64), torch.randn(rows, 6, dtype=torch.float64),
              torch.randn(candidates, 6, dtype=torch.float64)]
    results = []
    for function in (rlmrec.cosine_infonce, rlmrec.cosine_infonce_reference):
        leaves = [x.clone().requires_grad_() for x in inputs]
        value = function(*leaves, 0.2)
        results.append((value.detach(), torch.autograd.grad(value, leaves)))
    (fused, fused_grads), (plain, plain_grads) = results
    torch.testing.assert_close(fused, plain)
    for mine, theirs in zip(fused_grads, plain_grads):
        torch.testing.assert_close(mine, theirs)


def test_looking_up_recbole_models_leaves_anomaly_detection_as_it_was():
    """RecBole's look-up imports every RecBole model module, and sine.py switches autograd's anomaly detection on
    for the whole process (slow, and breaks meta-device backward passes); the plugin's look-up restores it."""
    assert not torch.is_anomaly_enabled()
    get_model("BPR")
    with pytest.raises(ConfigError):
        get_model("NoSuchModel")
    assert not torch.is_anomaly_enabled()
