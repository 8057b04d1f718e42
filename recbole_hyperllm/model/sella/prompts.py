"""SeLLa-Rec's prompts: the user's history titles, the candidate title and the three special tokens.

Step 1 (TALLRec, Bao et al. RecSys 2023; SeLLa-Rec step 1) asks a yes/no question over the user's
history titles and a candidate title. Step 3 (SeLLa-Rec, arXiv 2504.10107, Sec. 3.3; public code
wzhwzhwzh0921/SeLLa) puts three placeholders into the same question, ``<User_ID>`` after the user,
``<Item_ID>`` and ``<Warm_ID>`` after the candidate; the model replaces each placeholder by one vector
(``inputs_embeds``). A prompt is a list of parts: strings, and placeholder names where a vector goes.

History: the user's ``history_len`` most recent training interactions (by timestamp when the data has
one, else in file order), each marked liked / disliked by its label, the candidate itself left out
(a training row never sees its own label). A user without any (a user of the evaluation rows only, or
whose only training row is the candidate) gets the text ``NO_HISTORY``: a documented fallback, not an
error, since a cold user is a case a CTR model must score.
"""
from collections import defaultdict

from recbole_hyperllm.errors import ConfigError

USER_TOKEN, ITEM_TOKEN, WARM_TOKEN = "<User_ID>", "<Item_ID>", "<Warm_ID>"
PLACEHOLDERS = (USER_TOKEN, ITEM_TOKEN, WARM_TOKEN)
NO_HISTORY = "none yet"
PROMPT_VERSION = 1  # part of the step caches' keys: change it when the templates below change


def item_text(title, year=None):
    """``Title (year)``, or the title alone when the year is missing."""
    year = str(year or "").strip()
    return f"{title} ({year})" if year and year != "[PAD]" else title


def item_embedding_prompt(title_text, noun="movie"):
    """The text whose last hidden state is the item's LLM embedding (SeLLa's ``"Movie: {title}"``)."""
    return f"{noun.capitalize()}: {title_text}"


def recent_histories(users, items, labels, order, history_len):
    """{user: [(item, label), ...]}: each user's ``history_len + 1`` most recent interactions, newest first.

    ``order`` ranks the rows in time (larger = later; the row index where the data has no timestamp). One
    more than ``history_len`` is kept so that dropping the candidate still leaves ``history_len``."""
    rows = defaultdict(list)
    for user, item, label, when in zip(users, items, labels, order):
        rows[int(user)].append((float(when), int(item), int(label > 0.5)))
    histories = {}
    for user, entries in rows.items():
        entries.sort(key=lambda e: e[0], reverse=True)
        histories[user] = [(item, label) for _, item, label in entries[: history_len + 1]]
    return histories


class PromptBook:
    """Builds every prompt of a dataset: ``titles[i]`` is item ``i``'s text (``item_text``), ``histories``
    as ``recent_histories`` gives them."""

    def __init__(self, titles, histories, history_len, noun="movie"):
        if history_len < 0:
            raise ConfigError(f"config key 'history_len' is {history_len}; it must be an integer >= 0")
        self.titles, self.histories, self.history_len, self.noun = titles, histories, history_len, noun

    def history(self, user, candidate):
        """[(item, label)] of ``user``, newest first, without ``candidate``, at most ``history_len``."""
        entries = [(i, l) for i, l in self.histories.get(int(user), ()) if i != int(candidate)]
        return entries[: self.history_len]

    def history_text(self, user, candidate):
        """``"Title (year): liked; Title (year): disliked"`` or ``NO_HISTORY``."""
        entries = self.history(user, candidate)
        if not entries:
            return NO_HISTORY
        return "; ".join(f"{self.titles[i]}: {'liked' if l else 'disliked'}" for i, l in entries)

    def parts(self, user, item, with_tokens):
        """The prompt of (user, item) as parts; with ``with_tokens`` the three placeholders are in it.

        Without: ``A user rated these movies: H. Will the user like the movie T? Answer Yes or No.\\nAnswer:``
        With: ``A user <User_ID> rated ... the movie T <Item_ID><Warm_ID>? Answer Yes or No.\\nAnswer:``"""
        history = self.history_text(user, item)
        title = self.titles[int(item)]
        ending = "? Answer Yes or No.\nAnswer:"
        if not with_tokens:
            return [f"A user rated these {self.noun}s: {history}. Will the user like the {self.noun} {title}{ending}"]
        return ["A user ", USER_TOKEN, f" rated these {self.noun}s: {history}. Will the user like the {self.noun} "
                f"{title} ", ITEM_TOKEN, WARM_TOKEN, ending]


def fill_placeholders(parts, vectors):
    """``parts`` with each placeholder name replaced by its vector (``vectors[name]``: a (1, H) tensor)."""
    filled = []
    for part in parts:
        if part in PLACEHOLDERS:
            filled.append(vectors[part])
        else:
            filled.append(part)
    return filled
