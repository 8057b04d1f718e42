"""Shared pieces of the data pipeline: errors, crash-safe writes, text cleaning, atomic-file I/O."""
import csv
import hashlib
import json
import os
import threading

csv.field_size_limit(1 << 30)  # long Amazon descriptions


# The interaction files dataset_tools writes (RecBole atomic format).
INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


class PipelineError(Exception):
    """Bad input or a failed stage; the message names the file/line/key and the fix. The CLI exits 1."""


def clean_text(value):
    """One line of text: tabs, newlines and runs of spaces collapsed (atomic files are tab-separated)."""
    if value is None:
        return ""
    return " ".join(str(value).replace("\t", " ").split())


def replace_when_done(path):
    """Path to write to; call ``os.replace(tmp, path)`` after. A crash never leaves a half-written ``path``
    (the name is per process, so two writers never share a temporary file)."""
    return f"{path}.{os.getpid()}.{threading.get_ident()}.partial"


def write_atomic_file(path, header, rows):
    """Write a RecBole atomic file (``header`` = ["name:type", ...]) under a temporary name, then rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = replace_when_done(path)
    count = 0
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(header) + "\n")
        for row in rows:
            handle.write("\t".join(clean_text(v) for v in row) + "\n")
            count += 1
    os.replace(partial, path)
    return count


def read_atomic_rows(path):
    """(field names without types, iterator of (line number, dict)) of an atomic file."""
    if not os.path.isfile(path):
        raise PipelineError(f"{path} not found")
    handle = open(path, encoding="utf-8", newline="")
    reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise PipelineError(f"{path}, line 1: empty file; expected a header like 'item_id:token'") from None
    names = [column.partition(":")[0] for column in header]

    def rows():
        with handle:
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(names):
                    raise PipelineError(f"{path}, line {line_no}: {len(row)} columns, the header has {len(names)}")
                yield line_no, dict(zip(names, row))

    return names, rows()


def fingerprint(*parts):
    """Short sha256 of JSON-serialisable parts (cache keys, stage inputs)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def file_fingerprint(path):
    """sha256 of a file's bytes (to tell whether a stage's input changed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
