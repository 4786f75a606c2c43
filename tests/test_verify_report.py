"""`mlpapers verify` tolerances and failures; README marker rewriting."""
import json

import pytest

from mlpapers.report import END, START, replace_between
from mlpapers.verify import compare, flatten, rule_for, verify

RULES = [
    {"pattern": "*:*seconds*", "skip": True},
    {"pattern": "a.json:acc.*", "abs": 0.01},
    {"pattern": "a.json:ppl", "rel": 0.05},
]


def test_flatten_nested_metrics():
    assert flatten({"x": {"y": 1, "z": {"w": 2}}}) == {"x.y": 1, "x.z.w": 2}


def test_first_matching_rule_wins_and_default_is_exact():
    assert rule_for("a.json:acc.mean", RULES)["abs"] == 0.01
    assert rule_for("a.json:train_seconds", RULES)["skip"]
    assert rule_for("b.json:other", RULES)["abs"] == 0.0


def test_compare_within_and_beyond_tolerance():
    pub = {"a.json:acc.mean": 0.90, "a.json:ppl": 100.0, "a.json:train_seconds": 5.0}
    now = {"a.json:acc.mean": 0.905, "a.json:ppl": 106.0, "a.json:train_seconds": 50.0}
    rows = {r["metric"]: r for r in compare(now, pub, RULES)}
    assert rows["a.json:acc.mean"]["ok"]
    assert not rows["a.json:ppl"]["ok"]  # 6% > 5% relative tolerance
    assert "a.json:train_seconds" not in rows  # skipped


def test_missing_or_null_metric_fails_on_either_side():
    rows = {r["metric"]: r for r in compare({"a.json:acc.x": 1.0, "a.json:acc.n": None},
                                            {"a.json:acc.y": 1.0, "a.json:acc.n": 3}, RULES)}
    assert not rows["a.json:acc.x"]["ok"] and rows["a.json:acc.x"]["published"] is None
    assert not rows["a.json:acc.y"]["ok"] and rows["a.json:acc.y"]["now"] is None
    assert not rows["a.json:acc.n"]["ok"]


def test_verify_against_a_published_file(tmp_path, capsys):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "a.json").write_text(json.dumps({"acc": {"mean": 0.9}}))
    (tmp_path / "tol.yaml").write_text("rules:\n  - {pattern: 'a.json:acc.*', abs: 0.01}\n")
    pub = tmp_path / "published.json"
    pub.write_text(json.dumps({"a.json": {"acc": {"mean": 0.895}}}))
    assert verify(tmp_path, published=str(pub), tolerances=tmp_path / "tol.yaml") == 0
    pub.write_text(json.dumps({"a.json": {"acc": {"mean": 0.85}}}))
    assert verify(tmp_path, published=str(pub), tolerances=tmp_path / "tol.yaml") == 1
    out = capsys.readouterr().out
    assert "a.json:acc.mean" in out and "NO" in out and "1 FAILED" in out


def test_readme_markers_replace_only_the_results():
    text = f"intro\n{START}\nold table\n{END}\noutro\n"
    new = replace_between(text, "new table")
    assert new == f"intro\n{START}\nnew table\n{END}\noutro\n"
    assert replace_between(new, "new table") == new  # idempotent
    with pytest.raises(ValueError, match="markers"):
        replace_between("no markers here", "x")
