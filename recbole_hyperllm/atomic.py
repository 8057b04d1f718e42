"""Checks on RecBole atomic files before RecBole reads them, with errors that name file and line.

RecBole's own loader fails late and vaguely on a bad header or a dangling
reference; these checks run first and say what to fix.
"""
import os

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


class AtomicFileError(ValueError):
    """An atomic file is missing or malformed; the message names the file (and line) and the fix."""


def read_header(path):
    """[(field, type)] of an atomic file, validated."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().rstrip("\n").rstrip("\r")
    if not first:
        raise AtomicFileError(f"{path}, line 1: empty file; an atomic file starts with a header like 'user_id:token'")
    fields = []
    for column in first.split("\t"):
        name, sep, kind = column.partition(":")
        if not sep or not name or kind not in FIELD_TYPES:
            raise AtomicFileError(
                f"{path}, line 1: header column {column!r} is not 'name:type' with type in {FIELD_TYPES} "
                "(columns are separated by tabs)"
            )
        fields.append((name, kind))
    return fields


def require_files(data_path, dataset, needed, purpose, how_to_make):
    """Every ``dataset.suffix`` in ``needed`` (suffix -> columns) exists and has those columns."""
    for suffix, columns in needed.items():
        path = os.path.join(data_path, f"{dataset}.{suffix}")
        if not os.path.isfile(path):
            raise AtomicFileError(f"{path} not found: {purpose} needs it (columns {columns}). {how_to_make}")
        names = [name for name, _ in read_header(path)]
        absent = [c for c in columns if c not in names]
        if absent:
            raise AtomicFileError(f"{path}, line 1: columns {absent} are missing (found {names})")


def interaction_files(data_path, dataset, benchmark_filename):
    suffixes = [f"{b}.inter" for b in benchmark_filename] if benchmark_filename else ["inter"]
    return [os.path.join(data_path, f"{dataset}.{suffix}") for suffix in suffixes]


def read_columns(path, columns):
    """{column: numpy array} of an atomic file: token -> str, float -> float64, float_seq -> (n, d) float32.

    The file's header gives the types (RecBole's atomic format); a float_seq must
    have the same length on every row.
    """
    import numpy as np
    import pandas as pd

    header = dict(read_header(path))
    missing = [c for c in columns if c not in header]
    if missing:
        raise AtomicFileError(f"{path}, line 1: columns {missing} are missing (found {list(header)})")
    names = [f"{name}:{kind}" for name, kind in header.items()]
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3, header=0, names=names,
                        engine="c")
    result = {}
    for column in columns:
        kind = header[column]
        values = frame[f"{column}:{kind}"].to_numpy()
        if kind == "float":
            result[column] = _parse_floats(path, column, values)
        elif kind == "float_seq":
            rows = [row.split(" ") if row else [] for row in values]
            lengths = {len(r) for r in rows}
            if len(lengths) > 1:
                line = 2 + next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
                raise AtomicFileError(f"{path}, line {line}: {column} has a different length than on line 2")
            result[column] = _parse_floats(path, column, np.array(rows, dtype=object)).astype(np.float32)
        else:
            result[column] = values.astype(str)
    return result


def _parse_floats(path, column, values):
    import numpy as np

    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        for i, value in enumerate(np.asarray(values, dtype=object)):
            try:
                np.asarray(value, dtype=np.float64)
            except ValueError:
                raise AtomicFileError(f"{path}, line {i + 2}: {column} is not a number: {str(value)[:60]!r}") from None
        raise AtomicFileError(f"{path}: {column} holds values that are not numbers") from None


def check_interactions(path, user_field="user_id", item_field="item_id", warn=None):
    """A ``.inter`` file RecBole can train on, else AtomicFileError naming the line: user and item columns
    of type token, at least one row, every row with the header's number of tab-separated columns (a line
    split by spaces would otherwise become one phantom user), no empty user or item and none with spaces
    around it (another user to RecBole), numbers in float columns. Repeated (user, item) rows, which
    RecBole keeps, are counted in one ``warn`` line. Returns the set of item tokens."""
    header = read_header(path)
    names = [name for name, _ in header]
    for field in (user_field, item_field):
        if (field, "token") not in header:
            raise AtomicFileError(f"{path}, line 1: no '{field}:token' column (found {[f'{n}:{k}' for n, k in header]}); "
                                  "interactions need user_id:token and item_id:token columns (or set "
                                  "USER_ID_FIELD / ITEM_ID_FIELD to yours)")
    required = [names.index(user_field), names.index(item_field)]
    floats = [i for i, (_, kind) in enumerate(header) if kind == "float"]
    rows, pairs, repeated = 0, set(), 0
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line_number, line in enumerate(handle, start=2):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            values = line.split("\t")
            if len(values) != len(header):
                raise AtomicFileError(f"{path}, line {line_number}: {len(values)} column(s) where the header has "
                                      f"{len(header)}; separate the columns with tabs")
            for i in required:
                if not values[i].strip():
                    raise AtomicFileError(f"{path}, line {line_number}: {names[i]} is empty")
                if values[i] != values[i].strip():
                    raise AtomicFileError(f"{path}, line {line_number}: {names[i]} {values[i]!r} has spaces around it "
                                          "(RecBole would read another token); remove them")
            for i in floats:
                if values[i] and not _is_number(values[i]):
                    raise AtomicFileError(f"{path}, line {line_number}: {names[i]} is not a number: {values[i][:60]!r}")
            rows += 1
            pair = (values[required[0]], values[required[1]])
            repeated += pair in pairs
            pairs.add(pair)
    if not rows:
        raise AtomicFileError(f"{path}: no interactions after the header; the file is empty")
    if repeated and warn is not None:
        warn(f"{path}: {repeated} rows repeat a (user, item) pair of an earlier row; RecBole keeps them (remove "
             "them unless repeats are meant)")
    return {item for _, item in pairs}


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False
