"""The paper's item and user prompts (HyperLLM, SIGIR 2025, section 4.1), asking for JSON.

The instructions are the paper's words; the input lines follow the paper's
"Item Information: t1 | t2 | ..." and "Summary: S, Tags: T | ..." layouts; the
output section asks for a JSON object instead of free text so answers can be
validated (``answers.py``).
"""
import json

ITEM_INSTRUCTIONS = (
    "Please generate a concise summary highlighting the main features and appeal of the item.\n"
    "Please generate 3 level tags for the item. The tags must be different and not duplicated at different "
    "levels. Each level can have multiple tags. Higher-level tags should represent broad, general categories "
    "that define the item's overall domain or purpose. Lower-level tags should represent increasingly "
    "detailed classifications.\n"
    "Please generate edges between different level tags. Each edge should represent a parent-child "
    "relationship, where a higher-level tag is the parent and a lower-level tag is the child. The tags on "
    "each edge must be within the generated set of tags."
)
ITEM_OUTPUT = (
    'Answer with one JSON object only: {"summary": "...", "tags": {"level1": ["..."], "level2": ["..."], '
    '"level3": ["..."]}, "edges": [["parent tag", "child tag"], ...]}. level1 holds the broadest tags.'
)
USER_INSTRUCTIONS = (
    "Please analyze the item summaries and tags and generate a concise summary that captures the user's "
    "preferences based on these inputs. Ensure that the summary reflects the user's preferences, avoiding "
    "repetition while capturing patterns, common themes, and specific features."
)
USER_OUTPUT = 'Answer with one JSON object only: {"summary": "..."}.'

ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "tags": {
            "type": "object",
            "properties": {f"level{k}": {"type": "array", "items": {"type": "string"}, "minItems": 1}
                           for k in (1, 2, 3)},
            "required": ["level1", "level2", "level3"],
        },
        "edges": {"type": "array", "items": {"type": "array", "items": {"type": "string"},
                                               "minItems": 2, "maxItems": 2}},
    },
    "required": ["summary", "tags", "edges"],
}
USER_SCHEMA = {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}


def item_information(fields):
    """The paper's 'Item Information: t1 | t2 | ... | tm' line from an item's non-empty text fields."""
    parts = [f"{name}: {value}" for name, value in fields.items() if value]
    return "Item Information: " + " | ".join(parts) + "."


def reask_note(problems, ask):
    """The paragraph that turns a prompt into re-ask number ``ask`` (2, 3, ...): the problems of the previous
    answer and, from the third ask on, how many answers were rejected, so that every ask is a distinct request
    (and answer-cache key) instead of a repeat served from the cache."""
    if not problems:
        return ""
    reasons = "; ".join(problems)
    if ask <= 2:
        return f"\n\nYour previous answer was rejected: {reasons}. Answer again."
    return f"\n\nYour previous {ask - 1} answers were rejected, the last one because: {reasons}. Answer again."


def item_messages(fields, problems=None, ask=2):
    """Chat messages for one item; ``problems`` (from a rejected answer) turns it into re-ask number ``ask``."""
    content = f"{ITEM_INSTRUCTIONS}\n\nInput:\n{item_information(fields)}\n\nOutput:\n{ITEM_OUTPUT}"
    return [{"role": "user", "content": content + reask_note(problems, ask)}]


def format_item_record(record):
    """'Summary: S, Tags: t1, t2, ...' for one item of a user's history (the paper's user-prompt input)."""
    tags = [tag for level in record["levels"] for tag in level]
    return f"Summary: {record['summary']}, Tags: {', '.join(tags)}"


def user_messages(item_records, problems=None, ask=2):
    """Chat messages for one user from the records of the user's (training) items; ``problems`` as in
    ``item_messages``."""
    history = " | ".join(format_item_record(r) for r in item_records)
    content = f"{USER_INSTRUCTIONS}\n\nInput:\n{history}.\n\nOutput:\n{USER_OUTPUT}"
    return [{"role": "user", "content": content + reask_note(problems, ask)}]


def response_format(schema, name, mode):
    """The ``response_format`` argument for a structured-output mode: schema, object or none."""
    if mode == "schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    if mode == "object":
        return {"type": "json_object"}
    return None


def dumps(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
