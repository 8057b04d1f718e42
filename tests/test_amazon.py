"""dataset_tools.amazon: the three dump layouts, rating filter, iterative k-core, errors, resume, Table-1 stats."""
import gzip
import json
import os

import pytest

from dataset_tools.amazon import (convert_amazon, filter_interactions, iter_json_lines, main, read_meta,
                                  read_reviews, table1_stats)
from dataset_tools.common import PipelineError

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\tdescription:token_seq\tprice:float"


def write_lines(path, lines):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        with open(path, "wb") as handle:
            handle.write(data)
    return str(path)


def review14(user, item, rating, ts):
    return json.dumps({"reviewerID": user, "asin": item, "overall": rating, "unixReviewTime": ts,
                       "reviewText": "text", "summary": "s"})


def lines_of(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


# 2014, k=2. Round 1 removes U (one rating >= 4); item z then has only V and goes in round 2;
# V is then left with x alone and goes in round 3. w is only rated < 4; t has no text.
REVIEWS_2014 = [
    review14("A", "x", 5.0, 100), review14("A", "y", 4.0, 200), review14("A", "x", 4.0, 300),  # duplicate
    review14("B", "x", 5.0, 110), review14("B", "y", 5.0, 120),
    review14("U", "z", 5.0, 130), review14("U", "w", 3.0, 140),
    review14("V", "z", 4.0, 150), review14("V", "x", 5.0, 160),
    review14("A", "w", 2.0, 170),
    review14("A", "t", 5.0, 180), review14("B", "t", 5.0, 190),
]
META_2014 = [  # Python dict literals, as in the 2014 meta_*.json.gz files
    repr({"asin": "x", "title": "Toy <b>X</b>\tfun", "brand": "Acme", "price": 12.5,
          "categories": [["Toys & Games", "Puzzles"], ["Toys & Games", "Puzzles"], ["Gifts"]],
          "description": "Line1\nLine2<br/>done"}),
    repr({"asin": "y", "title": "Y game", "categories": [["Toys & Games"]], "description": ""}),
    repr({"asin": "z", "title": "Z", "categories": [["Toys & Games"]]}),
    repr({"asin": "w", "title": "W", "brand": "Other", "categories": [["Other"]]}),
    repr({"asin": "t", "categories": [["Toys & Games"]]}),
]


@pytest.fixture
def dumps2014(tmp_path):
    return (write_lines(tmp_path / "reviews_Toys_and_Games_5.json.gz", REVIEWS_2014),
            write_lines(tmp_path / "meta_Toys_and_Games.json.gz", META_2014))


def test_2014_iterative_kcore_and_item_rows(dumps2014, tmp_path):
    reviews, meta = dumps2014
    stats = convert_amazon(reviews, meta, str(tmp_path / "out"), "toy", k=2, progress=False)
    folder = tmp_path / "out" / "toy"
    inter = lines_of(folder / "toy.inter")
    assert inter[0] == INTER_HEADER
    assert inter[1:] == ["A\ty\t4.0\t200.0", "A\tx\t4.0\t300.0", "B\tx\t5.0\t110.0", "B\ty\t5.0\t120.0"]
    item = lines_of(folder / "toy.item")
    assert item[0] == ITEM_HEADER
    assert item[1:] == ["x\tToy X fun\tAcme\tToys & Games > Puzzles | Gifts\tLine1 Line2 done\t12.5",
                        "y\tY game\t\tToys & Games\t\t"]
    assert stats == {"reviews_read": 12, "textless_dropped": 2, "users": 2, "items": 2, "interactions": 4,
                     "density": 1.0, "features": 4, "avg_tokens": 8.5}
    # x: 3 title + 1 brand + 5 category words + 3 description; y: 2 + 0 + 3 + 0
    assert table1_stats(str(folder / "toy.inter"), str(folder / "toy.item")) == {
        "users": 2, "items": 2, "interactions": 4, "density": 1.0, "features": 4, "avg_tokens": 8.5}


def test_2014_keep_textless(dumps2014, tmp_path):
    reviews, meta = dumps2014
    stats = convert_amazon(reviews, meta, str(tmp_path), "toy", k=2, require_text=False, progress=False)
    assert (stats["users"], stats["items"], stats["interactions"], stats["textless_dropped"]) == (2, 3, 6, 0)
    assert lines_of(tmp_path / "toy" / "toy.item")[1] == "t\t\t\tToys & Games\t\t"


def test_filter_interactions_iterates_and_sorts():
    rows = list(read_reviews_from_list(REVIEWS_2014))
    kept = filter_interactions(rows, min_rating=4.0, k=2)
    assert [(u, i) for u, i, _, _ in kept] == [("A", "t"), ("A", "y"), ("A", "x"), ("B", "x"), ("B", "y"), ("B", "t")]
    assert [r[3] for r in kept[:3]] == [180.0, 200.0, 300.0]  # latest duplicate of (A, x) kept
    assert {u for u, *_ in filter_interactions(rows, 4.0, 1)} == {"A", "B", "U", "V"}
    assert filter_interactions(rows, 6.0, 1) == []


def read_reviews_from_list(lines):
    for line in lines:
        record = json.loads(line)
        yield record["reviewerID"], record["asin"], record["overall"], float(record["unixReviewTime"])


def test_default_k5_generated(tmp_path):
    core_users = [f"c{n}" for n in range(6)]
    core_items = [f"i{n}" for n in range(6)]
    lines, ts = [], 0
    for user in core_users:
        for item in core_items:
            ts += 1
            lines.append(review14(user, item, 5.0, ts))
        lines.append(review14(user, "low", 3.0, ts + 1000))  # 6 raters, all < 4
    # weak: 4 items -> round 1; edge then has 4 raters -> round 2; dep then has 4 items -> round 3
    for item in core_items[:3] + ["edge"]:
        lines.append(review14("weak", item, 4.0, 5000))
    for item in core_items[:4] + ["edge"]:
        lines.append(review14("dep", item, 4.0, 6000))
    for user in core_users[:3]:
        lines.append(review14(user, "edge", 5.0, 7000))
    meta = [json.dumps({"asin": item, "title": f"Item {item}", "brand": "B" + item[-1],
                        "categories": [["Toys", item]]}) for item in core_items + ["low", "edge"]]
    stats = convert_amazon(write_lines(tmp_path / "r.json", lines), write_lines(tmp_path / "m.json", meta),
                           str(tmp_path), "gen", progress=False)
    assert {key: stats[key] for key in ("users", "items", "interactions", "density")} == {
        "users": 6, "items": 6, "interactions": 36, "density": 1.0}
    assert stats["features"] == 6 + 7  # brands B0..B5; categories Toys, i0..i5
    assert stats["avg_tokens"] == 2 + 1 + 2
    users = {line.split("\t")[0] for line in lines_of(tmp_path / "gen" / "gen.inter")[1:]}
    assert users == set(core_users)


def test_2018_layout(tmp_path):
    reviews = write_lines(tmp_path / "Toys_and_Games_5.json", [
        json.dumps({"overall": 5.0, "verified": True, "reviewTime": "09 4, 2015", "reviewerID": "r1",
                    "asin": "a1", "unixReviewTime": 1441324800}),
        json.dumps({"overall": 4.0, "reviewerID": "r1", "asin": "a2", "unixReviewTime": 1441324900}),
    ])
    meta = write_lines(tmp_path / "meta_Toys_and_Games.json.gz", [
        json.dumps({"asin": "a1", "title": "Puzzle &amp; more", "brand": "Ravens", "main_cat": "Toys & Games",
                    "category": ["Toys & Games", "Puzzles"], "description": ["<p>Great</p>", "fun\tbox"],
                    "price": "$12.99"}),
        json.dumps({"asin": "a2", "title": "Thing", "main_cat": "<img src=\"x.png\" alt=\"AMAZON\"/>",
                    "category": [], "description": [], "price": ".a-box-inner{background-color:#fff}"}),
        json.dumps({"asin": "a1", "title": "duplicate line, ignored"}),
    ])
    assert list(read_reviews(reviews)) == [("r1", "a1", 5.0, 1441324800.0), ("r1", "a2", 4.0, 1441324900.0)]
    got = read_meta(meta)
    assert got["a1"] == {"title": "Puzzle & more", "brand": "Ravens", "categories": "Toys & Games > Puzzles",
                         "description": "Great fun box", "price": "12.99"}
    assert got["a2"] == {"title": "Thing", "brand": "", "categories": "", "description": "", "price": ""}
    convert_amazon(reviews, meta, str(tmp_path), "t18", k=1, progress=False)
    assert lines_of(tmp_path / "t18" / "t18.item")[1] == "a1\tPuzzle & more\tRavens\tToys & Games > Puzzles\tGreat fun box\t12.99"


def test_2023_layout(tmp_path):
    reviews = write_lines(tmp_path / "Toys_and_Games.jsonl", [
        json.dumps({"rating": 5.0, "title": "t", "text": "x", "asin": "B01", "parent_asin": "P01",
                    "user_id": "U1", "timestamp": 1588615855070, "verified_purchase": True}),
        json.dumps({"rating": 4.0, "asin": "B02", "user_id": "U1", "timestamp": 1588615856000}),
        "",
        json.dumps({"rating": 4.0, "asin": "B02", "parent_asin": "P03", "user_id": "U2", "timestamp": 1000}),
    ])
    assert list(read_reviews(reviews)) == [("U1", "P01", 5.0, 1588615855.07), ("U1", "B02", 4.0, 1588615856.0),
                                           ("U2", "P03", 4.0, 1.0)]
    meta = write_lines(tmp_path / "meta_Toys_and_Games.jsonl.gz", [
        json.dumps({"main_category": "Toys & Games", "title": "Blocks", "features": ["Big", "Red"],
                    "description": ["Fun <i>blocks</i>"], "price": 12.99, "store": "ShopA",
                    "categories": ["Toys & Games", "Building"], "details": {"Brand": "Lego"}, "parent_asin": "P01"}),
        json.dumps({"main_category": "Toys & Games", "title": "Car", "features": [], "description": [],
                    "price": None, "store": "ShopB", "categories": [], "details": {"Manufacturer": "Maker"},
                    "parent_asin": "B02"}),
        json.dumps({"main_category": "All Electronics", "title": "Bot", "features": [], "description": [],
                    "price": 3, "store": "ShopC", "categories": ["Toys & Games"], "details": {},
                    "parent_asin": "P03"}),
    ])
    got = read_meta(meta)
    assert got["P01"] == {"title": "Blocks", "brand": "Lego", "categories": "Toys & Games > Building",
                          "description": "Fun blocks Big Red", "price": "12.99"}
    assert got["B02"] == {"title": "Car", "brand": "Maker", "categories": "Toys & Games", "description": "",
                          "price": ""}
    assert got["P03"]["brand"] == "ShopC"
    assert got["P03"]["categories"] == "All Electronics | Toys & Games"
    assert got["P03"]["price"] == "3.0"
    stats = convert_amazon(reviews, meta, str(tmp_path), "t23", k=1, progress=False)
    assert (stats["users"], stats["items"], stats["interactions"]) == (2, 3, 3)
    assert lines_of(tmp_path / "t23" / "t23.inter")[1:] == ["U1\tP01\t5.0\t1588615855.07",
                                                            "U1\tB02\t4.0\t1588615856.0", "U2\tP03\t4.0\t1.0"]


def test_truncated_gzip(tmp_path):
    path = tmp_path / "reviews_Toys_and_Games_5.json.gz"
    write_lines(path, [review14(f"u{n}", f"i{n % 7}", 5.0, n) for n in range(3000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError) as info:
        list(read_reviews(str(path)))
    message = str(info.value)
    assert "reviews_Toys_and_Games_5.json.gz" in message and "re-download" in message and "after line" in message


def test_missing_file_and_bad_line(tmp_path):
    missing = str(tmp_path / "nope" / "reviews_Toys_and_Games_5.json.gz")
    with pytest.raises(PipelineError, match="not found") as info:
        iter_json_lines(missing)
    assert missing in str(info.value)
    bad = write_lines(tmp_path / "r.jsonl", [review14("a", "b", 5.0, 1), "", "{not json at all"])
    with pytest.raises(PipelineError, match=r"r\.jsonl, line 3"):
        list(read_reviews(bad))
    wrong = write_lines(tmp_path / "w.jsonl", [json.dumps({"user": "a", "item": "b"})])
    with pytest.raises(PipelineError, match=r"w\.jsonl, line 1: .*reviewerID.*user_id"):
        list(read_reviews(wrong))


def test_main_errors_and_success(dumps2014, tmp_path, capsys):
    missing = str(tmp_path / "missing.json.gz")
    assert main([missing, dumps2014[1], str(tmp_path / "out"), "--dataset", "toy"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and missing in err
    assert main([dumps2014[0], dumps2014[1], str(tmp_path / "out"), "--dataset", "toy", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert "interactions" in out and "avg_tokens" in out


def test_resume_skips_then_rewrites(dumps2014, tmp_path):
    reviews, meta = dumps2014
    out = str(tmp_path / "out")
    first = convert_amazon(reviews, meta, out, "toy", k=2, progress=False)
    paths = [os.path.join(out, "toy", f"toy.{ext}") for ext in ("inter", "item", "raw.json")]
    before = [(os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in paths]
    assert convert_amazon(reviews, meta, out, "toy", k=2, progress=False) == first
    assert [(os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in paths] == before
    third = convert_amazon(reviews, meta, out, "toy", min_rating=2.0, k=2, progress=False)
    assert [(os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in paths[:2]] != before[:2]
    assert third["interactions"] > first["interactions"]
    with open(paths[2], encoding="utf-8") as handle:
        assert json.load(handle)["inputs"]["min_rating"] == 2.0
