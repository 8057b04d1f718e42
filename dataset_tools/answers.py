"""Parse and validate LLM answers to the item and user prompts; repair what is unambiguous.

An item answer is valid when it has a summary of at least ``MIN_SUMMARY_WORDS``
words, exactly 3 non-empty tag levels, no tag on two levels, and at least one
edge, every edge joining two tags of the answer from a higher (broader) level to
a lower one. Because every kept edge goes from level a to a level b > a, the tag
graph of an answer cannot have a cycle.

Repairs (each counted): duplicate tags inside a level are dropped; a tag repeated
on a lower level is kept only on its broadest level; an edge written child ->
parent (lower level to higher) is turned round; edges naming a tag outside the
answer, joining two tags of one level, or repeated are dropped. Anything else
(no JSON, missing keys, 2 or 4 levels, an empty level, no edge left, no summary)
rejects the answer and the caller re-asks.
"""
import json
import re

MIN_SUMMARY_WORDS = 3
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_URL = re.compile(r"^\s*(https?://|www\.)\S*\s*$")


class InvalidAnswer(ValueError):
    """The answer cannot be repaired; ``problems`` says why (sent back to the LLM in the re-ask)."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def extract_json(text):
    """The first JSON object in ``text`` (code fences and prose around it allowed)."""
    if text is None or not str(text).strip():
        raise InvalidAnswer(["the answer was empty"])
    body = _FENCE.sub("", str(text).strip())
    start = body.find("{")
    if start < 0:
        raise InvalidAnswer(["the answer holds no JSON object"])
    try:
        value, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError as error:
        raise InvalidAnswer([f"the answer is not valid JSON ({error.msg} at char {error.pos})"]) from None
    if not isinstance(value, dict):
        raise InvalidAnswer(["the answer is not a JSON object"])
    return value


def normalise_tag(name):
    """Tag vocabulary key: lower case, single spaces, no surrounding punctuation (merges 'Skin Care.' and
    'skin  care')."""
    text = " ".join(str(name).replace("_", " ").split()).lower()
    return text.strip(" .,;:!?\"'`*-#()[]{}")


def check_summary(value):
    if not isinstance(value, str):
        raise InvalidAnswer(["'summary' must be a string"])
    summary = " ".join(value.split())
    if len(summary.split()) < MIN_SUMMARY_WORDS or _URL.match(summary):
        raise InvalidAnswer([f"'summary' must be a sentence of at least {MIN_SUMMARY_WORDS} words, "
                             f"got {summary[:60]!r}"])
    return summary


def _levels_of(tags):
    if isinstance(tags, dict):
        keys = list(tags)  # JSON keeps the answer's order; 'level1'.. keys are sorted by their number
        numbers = [re.findall(r"\d+", str(k)) for k in keys]
        if all(numbers):
            keys = [k for _, k in sorted(zip((int(n[0]) for n in numbers), keys))]
        return [tags[k] for k in keys]
    if isinstance(tags, list) and all(isinstance(level, list) for level in tags):
        return tags
    raise InvalidAnswer(["'tags' must be an object {level1: [...], level2: [...], level3: [...]}"])


def clean_levels(tags, repairs):
    """3 lists of normalised tags, broadest first; a tag seen on a higher level is removed lower down."""
    levels = _levels_of(tags)
    if len(levels) != 3:
        raise InvalidAnswer([f"'tags' must have exactly 3 levels, got {len(levels)}"])
    seen, cleaned = set(), []
    for depth, level in enumerate(levels, start=1):
        if not isinstance(level, list):
            raise InvalidAnswer([f"tag level {depth} must be a list of strings"])
        kept = []
        for raw in level:
            tag = normalise_tag(raw) if isinstance(raw, (str, int, float)) else ""
            if not tag:
                repairs.append(f"dropped empty tag on level {depth}")
            elif tag in kept:
                repairs.append(f"dropped duplicate tag {tag!r} on level {depth}")
            elif tag in seen:
                repairs.append(f"kept {tag!r} only on its broadest level, dropped it from level {depth}")
            else:
                kept.append(tag)
        if not kept:
            raise InvalidAnswer([f"tag level {depth} is empty (tags must differ between levels)"])
        seen.update(kept)
        cleaned.append(kept)
    return cleaned


def _edge_ends(edge):
    if isinstance(edge, (list, tuple)) and len(edge) == 2:
        return edge
    if isinstance(edge, dict) and {"parent", "child"} <= set(edge):
        return edge["parent"], edge["child"]
    if isinstance(edge, str) and "->" in edge:
        return edge.split("->", 1)
    return None


def clean_edges(edges, levels, repairs):
    """Edges (parent, child) between tags of ``levels``, each from a broader level to a narrower one."""
    if not isinstance(edges, list):
        raise InvalidAnswer(["'edges' must be a list of [parent, child] pairs"])
    level_of = {tag: depth for depth, level in enumerate(levels) for tag in level}
    kept = []
    for edge in edges:
        ends = _edge_ends(edge)
        if ends is None:
            repairs.append(f"dropped malformed edge {str(edge)[:40]!r}")
            continue
        parent, child = (normalise_tag(end) for end in ends)
        if parent not in level_of or child not in level_of:
            repairs.append(f"dropped edge {parent!r} -> {child!r}: a tag outside the answer's tags")
            continue
        if level_of[parent] == level_of[child]:
            repairs.append(f"dropped edge {parent!r} -> {child!r}: both on level {level_of[parent] + 1}")
            continue
        if level_of[parent] > level_of[child]:
            parent, child = child, parent
            repairs.append(f"turned edge round to {parent!r} -> {child!r} (parents are the broader tags)")
        if (parent, child) in kept:
            repairs.append(f"dropped repeated edge {parent!r} -> {child!r}")
            continue
        kept.append((parent, child))
    if not kept:
        raise InvalidAnswer(["no valid edge between tags of different levels"])
    return kept


def validate_item_answer(text):
    """(record, repairs): record = {summary, levels: [[...], [...], [...]], edges: [(parent, child)]}."""
    answer = extract_json(text)
    problems = [f"missing key '{key}'" for key in ("summary", "tags", "edges") if key not in answer]
    if problems:
        raise InvalidAnswer(problems)
    repairs = []
    summary = check_summary(answer["summary"])
    levels = clean_levels(answer["tags"], repairs)
    edges = clean_edges(answer["edges"], levels, repairs)
    return {"summary": summary, "levels": levels, "edges": [list(e) for e in edges]}, repairs


def validate_user_answer(text):
    """({summary}, repairs) for an answer to the user prompt."""
    answer = extract_json(text)
    if "summary" not in answer:
        raise InvalidAnswer(["missing key 'summary'"])
    return {"summary": check_summary(answer["summary"])}, []
