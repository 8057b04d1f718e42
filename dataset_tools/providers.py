"""Where item and user records come from: an LLM (``LLMProvider``) or the items' own fields (``MetadataProvider``).

A record is what the rest of the pipeline reads: items
``{summary, levels: [[l1 tags], [l2 tags], [l3 tags]], edges: [[parent, child]]}``,
users ``{summary}``. Both providers return records checked by the same validator
(``answers.py``), plus a status: ``ok``, ``repaired``, ``reasked`` or ``failed``.

The metadata provider is not an LLM and says so: its tags are the item's own
category fields (domain -> genre/category -> finer facet) and its summaries are
templates over the title, year, category and description. It exists so the
whole method can run offline; its tags carry no world knowledge beyond the
item's fields.
"""
import json
import re
from collections import Counter

from dataset_tools.answers import InvalidAnswer, validate_item_answer, validate_user_answer
from dataset_tools.prompts import ITEM_SCHEMA, USER_SCHEMA, item_messages, user_messages

CATEGORY_FIELDS = ("categories", "category")
GENRE_FIELDS = ("class", "genre", "genres")
TITLE_FIELDS = ("title", "movie_title", "name")
YEAR_FIELDS = ("release_year", "year")
MAX_DESCRIPTION_WORDS = 60


def first_field(fields, names):
    for name in names:
        if fields.get(name):
            return fields[name]
    return ""


class MetadataProvider:
    """Deterministic tags and summaries from item fields; ``domain`` names level 1 when no category path has one."""

    name = "metadata"

    def __init__(self, domain="item"):
        self.domain = domain

    def describe(self):
        return {"provider": "metadata", "note": "tags and summaries built from the items' own fields, no LLM",
                "domain": self.domain}

    def item_levels(self, fields):
        """[[level 1], [level 2], [level 3]], [(parent, child)] from a category path or genres + year."""
        paths = [p.split(" > ") for p in first_field(fields, CATEGORY_FIELDS).split(" | ") if p.strip()]
        if paths:
            return self._levels_from_paths(paths, fields.get("brand", ""))
        genres = [g.lower() for g in re.split(r"[\s|,]+", first_field(fields, GENRE_FIELDS)) if g.strip()]
        return self._levels_from_genres(genres, first_field(fields, YEAR_FIELDS))

    def _levels_from_paths(self, paths, brand):
        top, middle, fine, edges = [], [], [], []
        for path in paths:
            path = list(dict.fromkeys(p.strip() for p in path if p.strip()))  # 'Books > Books > Fiction'
            if not path:
                continue
            root = path[0]
            second = path[1] if len(path) > 1 else f"{root} general"
            last = path[-1] if len(path) > 2 else f"{second} other"
            top.append(root), middle.append(second), fine.append(last)
            edges += [(root, second), (second, last)]
        if brand:
            fine.append(f"brand {brand}")
            edges += [(m, f"brand {brand}") for m in middle]
        return [top, middle, fine], edges

    def _levels_from_genres(self, genres, year):
        genres = genres or ["unknown genre"]
        decade = f"{year[:3]}0s" if re.fullmatch(r"\d{4}", str(year)) else "unknown decade"
        fine = [f"{decade} {g}" for g in genres]
        edges = [(self.domain, g) for g in genres] + [(g, f"{decade} {g}") for g in genres]
        return [[self.domain], genres, fine], edges

    def item_summary(self, fields):
        title = first_field(fields, TITLE_FIELDS).rstrip(". ") or "An item"
        year = first_field(fields, YEAR_FIELDS)
        genres = first_field(fields, GENRE_FIELDS)
        category = first_field(fields, CATEGORY_FIELDS).split(" | ")[0]
        parts = [f"{title} ({year})" if year else title]
        if fields.get("brand"):
            parts.append(f"by {fields['brand']}")
        if genres:
            parts.append(f"is a {', '.join(g.lower() for g in genres.split())} {self.domain}")
        elif category:
            parts.append(f"in {category}")
        text = " ".join(parts) + "."
        if len(text.split()) < 3:
            text = f"An item titled {text}"
        description = " ".join(str(fields.get("description", "")).split()[:MAX_DESCRIPTION_WORDS])
        return f"{text} {description}".strip()

    def item_record(self, item_id, fields):
        levels, edges = self.item_levels(fields)
        answer = {"summary": self.item_summary(fields), "tags": {f"level{k + 1}": v for k, v in enumerate(levels)},
                  "edges": edges}
        try:
            record, repairs = validate_item_answer(json.dumps(answer))
        except InvalidAnswer as error:
            return None, {"status": "failed", "problems": error.problems, "asks": 0}
        return record, {"status": "repaired" if repairs else "ok", "repairs": repairs, "asks": 0}

    def user_record(self, user_id, item_records):
        """A template over the user's training items: the most frequent level-2 and level-3 tags."""
        middle = Counter(t for r in item_records for t in r["levels"][1])
        fine = Counter(t for r in item_records for t in r["levels"][2])
        parts = [f"Across {len(item_records)} recent {self.domain}s"]
        for label, counts in (("mostly", middle), ("more specifically", fine)):
            if counts:
                parts.append(f"{label} {', '.join(t for t, _ in counts.most_common(3))}")
        summary = "; ".join(parts) + "."
        record, _ = validate_user_answer(json.dumps({"summary": summary}))
        return record, {"status": "ok", "asks": 0}


class LLMProvider:
    """The paper's prompts through ``ChatClient``; invalid answers are re-asked with the problems named."""

    name = "llm"

    def __init__(self, client):
        self.client = client

    def describe(self):
        return {"provider": "llm", **self.client.settings.describe()}

    def _ask(self, build, validate, schema, schema_name):
        """Up to ``max_asks`` asks, each a distinct request: ask k carries the problems of answer k - 1 and k
        itself (``build(problems, k)``). ``info`` says how many asks there were and, of those, how many were
        requests sent to the server in this run and how many answers came from the cache."""
        problems, usage_total = None, Counter()
        info = {"asks": 0, "requests_sent": 0, "from_cache": 0}
        for ask in range(1, self.client.settings.max_asks + 1):
            text, usage, cached = self.client.complete(build(problems, ask), schema, schema_name)
            usage_total.update(usage)
            info["asks"] = ask
            info["from_cache" if cached else "requests_sent"] += 1
            try:
                record, repairs = validate(text)
            except InvalidAnswer as error:
                problems = error.problems
                continue
            status = "reasked" if ask > 1 else ("repaired" if repairs else "ok")
            return record, {**info, "status": status, "repairs": repairs, "usage": dict(usage_total)}
        return None, {**info, "status": "failed", "problems": problems, "usage": dict(usage_total)}

    def item_record(self, item_id, fields):
        return self._ask(lambda p, k: item_messages(fields, p, k), validate_item_answer, ITEM_SCHEMA, "item_tags")

    def user_record(self, user_id, item_records):
        return self._ask(lambda p, k: user_messages(item_records, p, k), validate_user_answer, USER_SCHEMA,
                         "user_summary")

