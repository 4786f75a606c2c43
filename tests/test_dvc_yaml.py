"""dvc.yaml agrees with what users and the code expect: readable plots, report deps complete."""
import yaml

from conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
BUILTIN_TEMPLATES = {"linear", "simple", "scatter", "scatter_jitter", "smooth", "confusion",
                     "confusion_normalized", "bar_horizontal", "bar_horizontal_sorted"}


def _stage_bodies():
    for name, stage in DVC["stages"].items():
        yield name, stage.get("do", stage)


def test_every_plot_names_its_x_and_y_and_a_known_template():
    for entry in DVC["plots"]:
        if isinstance(entry, str):
            assert entry.endswith(".png") and (ROOT / entry).exists() or not (ROOT / "plots").exists(), entry
            continue
        (name, spec), = entry.items()
        assert spec.get("x") and spec.get("y"), f"plot {name}: give it x and y (DVC otherwise plots the last column)"
        assert isinstance(spec["y"], dict), f"plot {name}: name the file(s) behind y"
        template = spec.get("template", "linear")
        assert template in BUILTIN_TEMPLATES or (ROOT / ".dvc" / "plots" / f"{template}.json").is_file(), template


def test_no_stage_level_plot_without_axes():
    # a stage-level `plots:` entry without x/y is drawn as its last column against the row index
    for name, body in _stage_bodies():
        for entry in body.get("plots", []):
            spec = next(iter(entry.values())) if isinstance(entry, dict) else {}
            assert spec.get("x") and spec.get("y"), f"stage {name}: plot {entry} has no x/y; make it an out"
