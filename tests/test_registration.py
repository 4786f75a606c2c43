"""The papers' pipeline.yaml files, the generated dvc.yaml and the code agree.

A paper registers itself in its folder (``pipeline.yaml``, ``tiny.yaml``); these tests fail
when the generated files are stale or when a stage would run on data, code or params that
DVC does not track.
"""
import dataclasses
import functools
import inspect
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mlpapers import pipeline
from mlpapers.experiment import EXPERIMENTS, get_experiment

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CMD = re.compile(r"^mlpapers (prepare|train|evaluate|plot) (\w+)")


def expanded_stages():
    """(name, body) for every stage, foreach expanded the way DVC does it."""
    for name, stage in DVC["stages"].items():
        if "foreach" not in stage:
            yield name, stage
            continue
        for item in stage["foreach"]:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            yield f"{name}@{item}", yaml.safe_load(text)


def paths(entries):
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def lookup(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"params.yaml has no key {dotted}"
        node = node[part]
    return node


def source_file(fn) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return Path(inspect.getsourcefile(fn)).resolve().relative_to(ROOT).as_posix()


STAGES = dict(expanded_stages())
BY_EXPERIMENT: dict[str, list[tuple[str, str, dict]]] = {}
for _name, _body in STAGES.items():
    _m = CMD.match(_body["cmd"])
    if _m:
        BY_EXPERIMENT.setdefault(_m.group(2), []).append((_name, _m.group(1), _body))


def test_generated_files_are_up_to_date():
    assert pipeline.stale(ROOT) == [], "run `mlpapers dvc-yaml --write` and commit the result"


def test_every_paper_folder_is_registered():
    folders = {p.name for p in (ROOT / "src/mlpapers/papers").iterdir() if (p / "pipeline.yaml").is_file()}
    assert folders == set(pipeline.paper_names())


def test_every_stage_runs_a_registered_experiment_and_every_experiment_has_its_stages():
    assert set(BY_EXPERIMENT) == set(EXPERIMENTS)
    for name, stages in BY_EXPERIMENT.items():
        exp = get_experiment(name)
        verbs = {verb for _, verb, _ in stages}
        assert "evaluate" in verbs, name
        assert ("prepare" in verbs) == (exp.prepare is not None), name


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_exist(stage):
    for key in STAGES[stage].get("params", []):
        assert isinstance(key, str), f"{stage}: params file sections are not used here"
        lookup(PARAMS, key)


@pytest.mark.parametrize("stage", sorted(s for s, b in STAGES.items() if CMD.match(b["cmd"])))
def test_stage_depends_on_the_code_it_runs(stage):
    verb, name = CMD.match(STAGES[stage]["cmd"]).groups()
    exp = get_experiment(name)
    # `mlpapers evaluate` also draws the experiment's PNGs
    for fn in [getattr(exp, verb)] + ([exp.plot] if verb == "evaluate" else []):
        assert source_file(fn) in STAGES[stage].get("deps", []), (
            f"{stage} runs {fn.__qualname__} from {source_file(fn)}; list that file in its deps")


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_config_field_is_tracked_by_some_stage(name):
    """A params field that no stage lists would change results without DVC noticing."""
    exp = get_experiment(name)
    listed = {k for _, _, body in BY_EXPERIMENT[name] for k in body.get("params", [])}
    for f in dataclasses.fields(exp.config):
        key = f"{name}.{f.name}"
        covered = name in listed or key in listed or any(k.startswith(key + ".") for k in listed)
        assert covered, f"params field {key} is read by {exp.config.__name__} but no {name} stage lists it"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_evaluate_writes_headline_metrics_and_results(name):
    (body,) = [b for _, verb, b in BY_EXPERIMENT[name] if verb == "evaluate"]
    assert f"metrics/{name}.json" in paths(body.get("metrics")), f"{name}_evaluate: declare metrics/{name}.json"
    assert f"results/{name}.json" in paths(body.get("outs")), f"{name}_evaluate: declare results/{name}.json"
    assert pipeline.headline_patterns(name), f"give {name} a headline in its pipeline.yaml"


def test_report_depends_on_every_results_file_and_report_module():
    deps = set(DVC["stages"]["report"]["deps"])
    for name in EXPERIMENTS:
        exp = get_experiment(name)
        assert f"results/{name}.json" in deps
        if exp.report is not None:
            assert source_file(exp.report) in deps, f"report stage: list {source_file(exp.report)}"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_headline_patterns_match_the_committed_results(name):
    path = ROOT / "results" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not produced yet (run dvc repro)")
    import json

    full = json.loads(path.read_text())
    headline = pipeline.select(full, pipeline.headline_patterns(name))
    assert headline, f"headline patterns of {name} match nothing in {path}"
    committed = ROOT / "metrics" / f"{name}.json"
    assert json.loads(committed.read_text()) == headline, f"{committed} is not the headline of {path}"


def test_select_keeps_nesting_and_only_matching_leaves():
    full = {"a": {"x": {"mean": 1, "std": 2}, "y": {"mean": 3}}, "b": 4}
    assert pipeline.select(full, ["a.*.mean"]) == {"a": {"x": {"mean": 1}, "y": {"mean": 3}}}
    assert pipeline.select(full, ["b"]) == {"b": 4}
    assert pipeline.select(full, ["c*"]) == {}


def test_every_paper_has_a_ci_check_that_trains():
    """`.ci/run` reruns each paper's `ci` stages from scratch: each must sit downstream of a train stage."""
    dag = {name: set(body.get("deps", [])) for name, body in STAGES.items()}
    outs = {name: set(paths(body.get("outs")) + paths(body.get("metrics"))) for name, body in STAGES.items()}

    def upstream(stage, seen=None):
        seen = seen or set()
        for other, o in outs.items():
            if other not in seen and any(d == x or d.startswith(x + "/") for d in dag[stage] for x in o):
                seen.add(other)
                upstream(other, seen)
        return seen

    for paper in pipeline.papers():
        ci = paper.spec.get("ci") or []
        assert ci, f"papers/{paper.name}/pipeline.yaml: name at least one ci stage"
        trains = set()
        for stage in ci:
            names = [s for s in STAGES if s == stage or s.split("@")[0] == stage]
            assert names, stage
            for s in names:
                trains |= {u for u in upstream(s) | {s} if " train " in STAGES[u]["cmd"]}
        assert trains, f"{paper.name}: ci stages {ci} retrain nothing"
    assert "ci-stages" in (ROOT / ".ci" / "run").read_text()


def test_ci_plan_reruns_a_papers_own_chain_but_reads_other_papers_git_outputs():
    dvc = {"stages": {
        "fetch": {"foreach": ["a"], "do": {"cmd": "fetch ${item}", "outs": ["data/raw/${item}"]}},
        "p_train": {"cmd": "t", "deps": ["data/raw/a"], "outs": ["models/p", {"plots/p/h.csv": {"cache": False}}]},
        "p_evaluate": {"cmd": "e", "deps": ["models/p"], "outs": [{"results/p.json": {"cache": False}}]},
        "p_plot": {"cmd": "p", "deps": ["plots/p/h.csv"], "outs": [{"plots/p.png": {"cache": False}}]},
        "q_train": {"cmd": "t", "deps": ["data/raw/a"], "outs": ["models/q"]},
        "q_evaluate": {"cmd": "e", "deps": ["models/q", "results/p.json", "plots/p/h.csv"],
                       "outs": [{"results/q.json": {"cache": False}}]},
        "r_train": {"cmd": "t", "deps": ["models/p"], "outs": ["models/r"]},
    }}
    owner = {"p_train": "P", "p_evaluate": "P", "p_plot": "P", "q_train": "Q", "q_evaluate": "Q", "r_train": "R"}
    # a paper's own chain reruns even through git-kept outputs (the plot's history CSV) ...
    assert pipeline.ci_plan(dvc, ["p_plot"], owner) == ["fetch@a", "p_train", "p_plot"]
    # ... another paper's git-kept results are read as committed ...
    assert pipeline.ci_plan(dvc, ["q_evaluate"], owner) == ["fetch@a", "q_train", "q_evaluate"]
    # ... and its DVC-cached models are rebuilt
    assert pipeline.ci_plan(dvc, ["r_train"], owner) == ["fetch@a", "p_train", "r_train"]
    with pytest.raises(Exception, match="not in dvc.yaml"):
        pipeline.ci_plan(dvc, ["nope"], owner)


def test_ci_plan_of_the_real_pipeline_trains_every_paper():
    plan = pipeline.ci_plan(DVC, pipeline.ci_stages())
    for paper in pipeline.papers():
        assert any(s.split("@")[0] in paper.stages and " train " in STAGES[s]["cmd"] for s in plan), paper.name
    for i, name in enumerate(plan):  # dependencies first
        for dep in STAGES[name].get("deps", []):
            producers = [s for s in plan if any(dep == o or dep.startswith(o + "/") for o in paths(STAGES[s].get("outs")))]
            assert all(plan.index(s) < i for s in producers), (name, dep)
