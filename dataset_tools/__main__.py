"""One CLI for the pipeline: ``python -m dataset_tools STAGE NAME --out DIR [options]``.

Stages: ``raw`` (Amazon review + metadata dumps -> atomic, see ``dataset_tools.amazon``),
``movielens`` (RecBole's bundled ml-100k -> atomic), ``split``, ``items``, ``users``,
``encode``, ``write``, ``stats``, and ``prepare`` (split to stats in order; each skips or
reuses what is already done). Examples::

    python -m dataset_tools raw Amazon_Toys --out dataset --reviews reviews_Toys_and_Games_5.json.gz \
        --meta meta_Toys_and_Games.json.gz

    # offline: tags and summaries from the items' own fields (not an LLM), MiniLM embeddings
    python -m dataset_tools prepare ml-100k --out dataset --provider metadata
    # a real endpoint (OpenAI, vLLM, Ollama, llama.cpp server); the key comes from OPENAI_API_KEY
    python -m dataset_tools prepare Amazon_Toys --out dataset --provider llm \\
        --base-url http://127.0.0.1:8000/v1 --model llama3-8b --encoder minilm

Exit status 1 with ``error: ...`` on bad input, a server that is down, a wrong key
or answers that stay invalid; everything finished before is kept.
"""
import argparse
import json
import os
import sys

from dataset_tools.common import PipelineError
from dataset_tools import pipeline

STAGES = ("raw", "movielens", "split", "items", "users", "encode", "write", "stats", "prepare")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m dataset_tools", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("dataset", help="dataset name (folder OUT/NAME, files NAME.inter, NAME.item, ...)")
    parser.add_argument("--out", default="dataset", help="root folder of the datasets (RecBole data_path)")
    parser.add_argument("--split-seed", type=int, default=2020, help="seed of the random 8:1:1 split per user")
    raw = parser.add_argument_group("raw Amazon dumps (stage raw)")
    raw.add_argument("--reviews", help="reviews_*.json.gz (2014), or the 2018/2023 JSON-lines review file")
    raw.add_argument("--meta", help="meta_*.json.gz (2014), or the 2018/2023 JSON-lines metadata file")
    raw.add_argument("--min-rating", type=float, default=4.0, help="keep ratings >= this")
    raw.add_argument("--k", type=int, default=5, help="iterative k-core on users and items")
    raw.add_argument("--keep-textless", action="store_true", help="keep items with no title and no description")
    provider = parser.add_argument_group("tags and summaries")
    provider.add_argument("--provider", choices=("metadata", "llm"), default="metadata",
                          help="metadata: built from the items' own fields, no LLM (offline); llm: the paper's "
                               "prompts through an OpenAI-compatible endpoint")
    provider.add_argument("--domain", default=None, help="level-1 tag when items have genres but no category "
                                                         "path (default: 'movie' for ml-*, else 'item')")
    provider.add_argument("--on-failure", choices=("fail", "metadata"), default="fail",
                          help="items/users whose answers stay invalid: stop (exit 1) or fill from metadata")
    provider.add_argument("--max-user-items", type=int, default=pipeline.DEFAULT_MAX_USER_ITEMS,
                          help="most recent training items shown in a user prompt")
    provider.add_argument("--max-prompt-chars", type=int, default=pipeline.DEFAULT_MAX_PROMPT_CHARS,
                          help="cut a user's history to this many characters of prompt (context size)")
    llm = parser.add_argument_group("LLM endpoint (provider llm, encoder openai:...)")
    llm.add_argument("--base-url", default=None, help="OpenAI-compatible base URL (else OPENAI_BASE_URL)")
    llm.add_argument("--model", default=None, help="chat model (else HYPERLLM_LLM_MODEL)")
    llm.add_argument("--api-key", default=None, help="API key (else OPENAI_API_KEY); never written anywhere")
    llm.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    llm.add_argument("--retries", type=int, default=6, help="retries on 429/5xx/timeouts/refused connections")
    llm.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    llm.add_argument("--json-mode", choices=("auto", "schema", "object", "none"), default="auto",
                     help="structured output: JSON schema, JSON mode, none, or auto (schema, then fall back)")
    llm.add_argument("--temperature", type=float, default=0.0)
    llm.add_argument("--max-tokens", type=int, default=1024)
    llm.add_argument("--max-asks", type=int, default=3, help="asks per item/user before giving up")
    parser.add_argument("--encoder", default="minilm",
                        help="minilm (all-MiniLM-L6-v2, offline), a local sentence-transformers folder, or "
                             "openai:MODEL (e.g. openai:text-embedding-3-large)")
    return parser


def make_provider(args):
    from dataset_tools.providers import MetadataProvider

    domain = args.domain or ("movie" if args.dataset.startswith("ml-") else "item")
    metadata = MetadataProvider(domain)
    if args.provider == "metadata":
        print("provider metadata: tags and summaries are built from the items' own fields, not by an LLM",
              file=sys.stderr)
        return metadata, 1, None
    from dataset_tools.llm import LLMSettings

    settings = LLMSettings.from_args(args)
    print(f"provider llm: {json.dumps(settings.describe())}", file=sys.stderr)
    return settings, args.concurrency, metadata if args.on_failure == "metadata" else None


def llm_provider(settings, folder, kind):
    from dataset_tools.llm import AnswerCache, ChatClient
    from dataset_tools.providers import LLMProvider

    return LLMProvider(ChatClient(settings, AnswerCache(pipeline.work_file(folder, f"{kind}.cache.jsonl"))))


def run_stage(stage, args, folder):
    if stage == "raw":
        from dataset_tools.amazon import convert_amazon

        if not args.reviews or not args.meta:
            raise PipelineError("stage raw needs --reviews FILE and --meta FILE")
        return convert_amazon(args.reviews, args.meta, args.out, args.dataset, args.min_rating, args.k,
                              require_text=not args.keep_textless)
    if stage == "movielens":
        return {"files": pipeline.import_movielens(folder, args.dataset)}
    if stage == "split":
        return {"files": pipeline.split_dataset(folder, args.dataset, seed=args.split_seed)}
    if stage in ("items", "users"):
        source, concurrency, fallback = make_provider(args)
        provider = source if args.provider == "metadata" else llm_provider(source, folder, stage)
        if stage == "items":
            return pipeline.run_items(folder, args.dataset, provider, concurrency, args.on_failure, fallback)
        return pipeline.run_users(folder, args.dataset, provider, concurrency, args.max_user_items,
                                  args.max_prompt_chars, args.on_failure, fallback)
    if stage == "encode":
        from dataset_tools.encode import load_encoder

        client = None
        if args.encoder.startswith("openai:"):
            import openai

            from dataset_tools.llm import endpoint_from_args

            base_url, api_key = endpoint_from_args(args)
            # retried by the encoder, which says so on each retry (the client's own retries are silent)
            client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0,
                                   timeout=args.timeout)
        return pipeline.run_encode(folder, args.dataset, load_encoder(args.encoder, client, retries=args.retries))
    if stage == "write":
        return pipeline.run_write(folder, args.dataset)
    return pipeline.table2(folder, args.dataset)


def main(argv=None):
    args = build_parser().parse_args(argv)
    folder = os.path.join(args.out, args.dataset)
    order = ["split", "items", "users", "encode", "write", "stats"] if args.stage == "prepare" else [args.stage]
    if args.stage == "prepare" and args.dataset == "ml-100k" and not os.path.isfile(
            pipeline.dataset_file(folder, args.dataset, "inter")):
        order.insert(0, "movielens")
    try:
        for stage in order:
            result = run_stage(stage, args, folder)
            print(f"{stage}: {json.dumps(result, default=str)}")
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished answers and vectors are cached; rerun the same command to go on",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
