"""The figures: risk-coverage panels (one per source, the AURC range end marked), their mean ± standard error
over seeds as the seeds page draws them from each seed's rc_curves.csv, and the training curves."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from PIL import Image

from argse.core.errors import ArgseError
from argse.reports import pages, plots
from argse.training import curves


def _rows(shift: float, groups: int = 2) -> list[dict]:
    """A curve whose error falls as the rejection rate rises; the last point has a group accepting nothing."""
    rates = [0.0, 0.2, 0.4, 0.8]
    return [{"target_rate": r, "tune_rejection_rate": r, "rejection_rate": r + shift, "error": 0.3 - 0.3 * r,
             "balanced_error": 0.4 - 0.4 * r + shift, "worst_group_error": 0.6 - 0.5 * r + shift,
             "group_error": [0.1] * groups, "group_coverage": [1 - r] * (groups - 1) + [0.0 if r == 0.8 else 0.5]}
            for r in rates]  # fmt: skip


def _ecfg():
    return SimpleNamespace(test_prior="train", protocol="argse")


def test_mean_curves_average_seeds_point_by_point():
    a, b = _rows(0.0), _rows(0.1)
    curve = plots.mean_curves([{("ce", "chow"): a}, {("ce", "chow"): b}])[("ce", "chow")]
    assert curve.x == pytest.approx([0.05, 0.25, 0.45, 0.85])
    assert curve.y["balanced_error"] == pytest.approx([0.45, 0.37, 0.29, 0.13])
    # two values 0.1 apart: standard deviation 0.1 / sqrt(2), standard error that / sqrt(2) = 0.05
    assert curve.se["worst_group_error"] == pytest.approx([0.05] * 4)
    assert curve.empty == [False, False, False, True]
    assert plots.mean_curves([{("ce", "chow"): a}])[("ce", "chow")].se["balanced_error"] == [0.0] * 4


def test_seed_curves_read_back_rc_curves_csv_and_refuse_mismatched_seeds(tmp_path):
    paths = []
    for seed, shift in enumerate([0.0, 0.1, 0.2]):
        curves = {("ce", "chow"): _rows(shift), ("gating", "plugin_worst"): _rows(shift / 2)}
        paths.append(tmp_path / f"s{seed}.csv")
        paths[-1].write_text(pages.curves_csv(curves, ["head", "tail"], _ecfg()))
    mean = pages.seed_curves(paths)
    assert list(mean) == [("ce", "chow"), ("gating", "plugin_worst")]
    assert mean[("ce", "chow")].y["balanced_error"][0] == pytest.approx(0.5)
    assert mean[("ce", "chow")].se["balanced_error"][0] == pytest.approx(0.1 / math.sqrt(3))
    png = plots.rc_panels(mean, tmp_path / "seeds.png", "three seeds", 0.8)
    assert Image.open(png).size == (800, 620)
    paths[2].write_text(pages.curves_csv({("ce", "chow"): _rows(0.0)}, ["head", "tail"], _ecfg()))
    with pytest.raises(ArgseError, match=r"s2\.csv holds other sources, methods or rates than .*s0\.csv; rerun"):
        pages.seed_curves(paths)
    paths[2].write_text(paths[0].read_text().replace("0.4,", "x,", 1))
    with pytest.raises(ArgseError, match=r"s2\.csv, line \d+: a rate or coverage is not a number"):
        pages.seed_curves(paths)


def test_rc_panels_draw_one_column_per_source(tmp_path):
    curves = {(s, m): _rows(0.0) for s in ("ce", "logit_adjust", "gating") for m in ("chow", "plugin_worst")}
    png = pages.plot_curves(curves, tmp_path / "rc.png", "demo")
    assert Image.open(png).size == (round(100 * (0.6 + 2.9 * 3)), 620)


def test_training_curves_of_no_epoch_draw_nothing(tmp_path):
    assert curves.training_curves([], tmp_path / "none.png", "x") is None and not (tmp_path / "none.png").exists()


def test_csv_rates_are_clipped_to_zero_one_and_rounded_to_what_samples_resolve():
    assert pages.share(-1.1102230246251565e-15) == 0.0 and pages.share(1.0000000000000036) == 1.0
    assert pages.share(0.000234627831714906) == 0.000234628 and pages.share(1 / 3) == 0.333333333
    rows = [{"target_rate": 0.0, "tune_rejection_rate": -1.1e-15, "rejection_rate": 0.1, "error": 0.2,
             "balanced_error": 0.3, "worst_group_error": 0.4, "group_error": [0.1, 0.2],
             "group_coverage": [1.0000000000000036, 0.5]}]  # fmt: skip
    line = pages.curves_csv({("ce", "chow"): rows}, ["head", "tail"], _ecfg()).splitlines()[1]
    assert line == "ce,chow,train,argse,0.0,0.0,0.1,0.2,0.3,0.4,0.1,0.2,1.0,0.5,,,,"  # no bootstrap: no interval
    rows[0] |= {"balanced_error_interval": [0.25, 0.35], "worst_group_error_interval": [-1e-16, 0.5]}
    line = pages.curves_csv({("ce", "chow"): rows}, ["head", "tail"], _ecfg()).splitlines()[1]
    assert line.endswith(",1.0,0.5,0.25,0.35,0.0,0.5")


def test_the_learning_rate_is_drawn_per_step_so_the_warm_up_shows():
    from argse.config.schema import parse
    from argse.training.curves import lr_per_step
    from argse.training.schedule import TrainRecipe

    recipe = parse(TrainRecipe, {"epochs": 10, "warmup_epochs": 2, "milestones": [8], "gamma": 0.1})
    at, lr = lr_per_step(recipe, 50)
    assert len(at) == 500 and at[1] == 0.02 and at[-1] == pytest.approx(9.98)
    assert lr[0] == pytest.approx(0.1 / 100) and lr[49] == pytest.approx(0.05)  # half-way up the warm-up at epoch 1
    assert max(lr) == pytest.approx(0.1) and lr[-1] == pytest.approx(0.01)
    long = lr_per_step(parse(TrainRecipe, {}), 400)  # 200 epochs of 400 steps: thinned, the warm-up still drawn
    assert len(long[0]) <= 2000 and sum(x < 5 for x in long[0]) >= 40
