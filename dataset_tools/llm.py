"""Chat calls through the ``openai`` client to any OpenAI-compatible server, with an on-disk answer cache.

* Endpoint, model and key come from flags or the environment (``OPENAI_BASE_URL``,
  ``OPENAI_API_KEY``, ``HYPERLLM_LLM_MODEL``); the key is never written or logged.
* ``AnswerCache``: one JSON line per finished call, appended and flushed as soon as the
  answer arrives, keyed by sha256(model + messages + request options). A killed run
  loses no finished call and repeats none; a line cut short by the kill is ignored.
* ``ChatClient.complete``: retries 429 / 5xx / timeouts / refused connections with
  exponential backoff, printing one line per retry (endpoint, try k of n, the error, the wait);
  a wrong key, an unknown model or a server that stays down end
  the stage with a ``PipelineError`` naming the endpoint and the fix. Structured output:
  ``json_mode`` ``schema`` (JSON schema), ``object`` (JSON mode), ``none``, or ``auto``
  (schema, falling back once to object, then none, when the server rejects it).
"""
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from dataset_tools.common import PipelineError, fingerprint
from dataset_tools.prompts import response_format

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai client's own default
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


def describe_error(error):
    """One line naming what went wrong: status and server message, or the error type and its cause."""
    status = getattr(error, "status_code", None)
    text = f"{status} {ChatClient._reason(error)}" if status is not None else f"{type(error).__name__}: {error}"
    cause = error.__cause__ or error.__context__
    if status is None and cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return " ".join(text.split())[:200]


def wait_before_retry(where, attempt, tries, error, backoff, cap=None):
    """Sleep before try ``attempt + 2`` of ``tries`` (exponential backoff from ``backoff`` seconds, at most ``cap``,
    with jitter) and say so on one line of stderr, above any progress bar: a server that is down is visible at
    once, not after minutes of silence."""
    base = backoff * (2 ** attempt)
    delay = (base if cap is None else min(base, cap)) * (0.5 + random.random())
    tqdm.write(f"{where}: try {attempt + 1} of {tries} failed ({describe_error(error)}); waiting {delay:.1f} s "
               f"before try {attempt + 2}", file=sys.stderr)
    time.sleep(delay)


def endpoint_from_args(args):
    """(base URL, API key) from the flags, else OPENAI_BASE_URL / OPENAI_API_KEY (either may be None)."""
    return (args.base_url or os.environ.get("OPENAI_BASE_URL"), args.api_key or os.environ.get("OPENAI_API_KEY"))


@dataclass
class LLMSettings:
    base_url: str = None
    model: str = None
    api_key: str = field(default=None, repr=False)
    timeout: float = 120.0
    retries: int = 6
    backoff: float = 1.0
    concurrency: int = 4
    json_mode: str = "auto"
    temperature: float = 0.0
    max_tokens: int = 1024
    max_asks: int = 3

    @classmethod
    def from_args(cls, args):
        """Flags first, then OPENAI_BASE_URL / OPENAI_API_KEY / HYPERLLM_LLM_MODEL."""
        base_url, api_key = endpoint_from_args(args)
        settings = cls(
            base_url=base_url, model=args.model or os.environ.get("HYPERLLM_LLM_MODEL"), api_key=api_key,
            timeout=args.timeout, retries=args.retries, concurrency=args.concurrency,
            json_mode=args.json_mode, temperature=args.temperature, max_tokens=args.max_tokens,
            max_asks=args.max_asks,
        )
        if not settings.model:
            raise PipelineError("no LLM model given: pass --model NAME or set HYPERLLM_LLM_MODEL")
        return settings

    @property
    def endpoint(self):
        return self.base_url or DEFAULT_BASE_URL

    def describe(self):
        """What the logs and the manifest may show (never the key)."""
        return {"base_url": self.endpoint, "model": self.model,
                "json_mode": self.json_mode, "temperature": self.temperature, "max_tokens": self.max_tokens}


class AnswerCache:
    """Append-only JSON-lines cache of raw answers: {key, answer, usage}."""

    def __init__(self, path):
        self.path = path
        self.entries = {}
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.isfile(path):
            self._load()

    def _load(self):
        """Read every complete line; a last line cut short by a kill is removed, a damaged complete line
        is skipped (its call will simply be made again)."""
        good_bytes = 0
        with open(self.path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # the last line of a killed run may be cut short
                good_bytes += len(raw)
                try:
                    entry = json.loads(raw)
                    self.entries[entry["key"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue
        if good_bytes != os.path.getsize(self.path):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_bytes)

    @staticmethod
    def key(model, messages, options):
        return fingerprint(model, messages, options)

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, answer, usage):
        entry = {"key": key, "answer": answer, "usage": usage}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self.entries[key] = entry
        return entry


class ChatClient:
    """One OpenAI-compatible endpoint, with retries and the structured-output fallback."""

    def __init__(self, settings, cache):
        import openai

        self.openai = openai
        self.settings = settings
        self.cache = cache
        self.mode = "schema" if settings.json_mode == "auto" else settings.json_mode
        self.client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key or "not-needed",
                                    timeout=settings.timeout, max_retries=0)
        self.retried = 0
        self.lock = threading.Lock()

    def complete(self, messages, schema, schema_name):
        """(answer text, usage dict, from_cache) for ``messages``; cached by model + messages + options."""
        options = {"temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens,
                   "schema": schema_name if self.settings.json_mode != "none" else None}
        key = AnswerCache.key(self.settings.endpoint + " " + self.settings.model, messages, options)
        hit = self.cache.get(key)
        if hit is not None:
            return hit["answer"], hit["usage"], True
        text, usage = self._call_with_retries(messages, schema, schema_name)
        self.cache.put(key, text, usage)
        return text, usage, False

    def _call_with_retries(self, messages, schema, schema_name):
        attempt = 0
        while True:
            mode = self.mode
            try:
                return self._call(messages, schema, schema_name, mode)
            except self.openai.AuthenticationError:
                raise PipelineError(f"{self._where()} rejected the API key (401): set OPENAI_API_KEY or "
                                    "--api-key to a valid key") from None
            except self.openai.PermissionDeniedError as error:
                raise PipelineError(f"{self._where()} refused the request (403): {self._reason(error)}") from None
            except self.openai.NotFoundError as error:
                raise PipelineError(f"{self._where()} has no model {self.settings.model!r} or no chat endpoint "
                                    f"(404: {self._reason(error)}); check --model and --base-url") from None
            except (self.openai.APITimeoutError, self.openai.APIConnectionError, self.openai.APIStatusError) as error:
                if isinstance(error, self.openai.APIStatusError) and self._fall_back_from(error, mode):
                    continue  # not a retry: e.g. llama.cpp's server answers 500 to a json_schema response_format
                status = getattr(error, "status_code", None)
                if status is not None and status not in RETRYABLE_STATUS:
                    raise PipelineError(f"{self._where()} rejected the request ({status}): "
                                        f"{self._reason(error)}") from None
                if attempt >= self.settings.retries:
                    what = "is down or unreachable" if status is None else f"kept answering {status}"
                    raise PipelineError(f"{self._where()} {what} after {attempt + 1} tries "
                                        f"({type(error).__name__}); finished answers are cached, rerun the "
                                        "same command to go on") from None
                with self.lock:
                    self.retried += 1
                wait_before_retry(self._where(), attempt, self.settings.retries + 1, error, self.settings.backoff)
                attempt += 1

    def _call(self, messages, schema, schema_name, mode):
        kwargs = {"model": self.settings.model, "messages": messages, "temperature": self.settings.temperature,
                  "max_tokens": self.settings.max_tokens}
        fmt = response_format(schema, schema_name, mode)
        if fmt is not None:
            kwargs["response_format"] = fmt
        reply = self.client.chat.completions.create(**kwargs)
        text = reply.choices[0].message.content if reply.choices else ""
        usage = reply.usage.model_dump() if getattr(reply, "usage", None) is not None else {}
        return text or "", {k: v for k, v in usage.items() if isinstance(v, int)}

    def _fall_back_from(self, error, sent_mode):
        """In ``auto`` mode a server that rejects ``response_format`` gets JSON mode, then plain text.
        True when the request should be sent again (another thread may have stepped down already)."""
        if self.settings.json_mode != "auto" or "response_format" not in self._reason(error).lower():
            return False
        with self.lock:
            if self.mode != sent_mode:
                return True
            if self.mode == "none":
                return False
            self.mode = {"schema": "object", "object": "none"}[self.mode]
        return True

    def _where(self):
        return f"LLM server {self.settings.endpoint}"

    @staticmethod
    def _reason(error):
        body = getattr(error, "body", None)
        if isinstance(body, dict):
            body = body.get("error", body)
            if isinstance(body, dict):
                body = body.get("message", body)
        return str(body or error)[:300]
