
import json
import math

import numpy as np
import pytest

from core.lib.results import append_jsonl, read_jsonl, write_atomic
from core.tools.report import (TOO_FEW_SEEDS, Stats, budget_comparisons, collect, compare_seeds, group_curves,
                               pairwise_table, penalty_matrix, summed_penalty, summed_penalty_table, write_report)
from core.tools.reported import REPORTED, compare, comparison_table


def row(method, seed, n, value, profile="mini", experiment="fig2_cifar10", paper="vaal"):
    return {"paper": paper, "experiment": experiment, "dataset": "cifar10", "method": method, "seed": seed,
            "cycle": n // 1000 - 1, "n_labeled": n, "fraction_labeled": n / 10000, "metric": "accuracy",
            "value": value, "profile": profile}


@pytest.fixture
def stored(tmp_path):
    values = {("random", 0): [40, 50, 60], ("random", 1): [42, 52, 58], ("entropy", 0): [40, 55, 65],
              ("entropy", 1): [42, 53, 67]}
    for (method, seed), curve in values.items():
        for n, value in zip((1000, 2000, 3000), curve):
            append_jsonl(tmp_path / method / f"seed{seed}" / "results.jsonl", row(method, seed, n, value))
    return tmp_path


def test_append_is_atomic_and_append_only(tmp_path):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"a": 1})
    append_jsonl(path, {"a": 2})
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}] and not list(tmp_path.glob("*.partial"))


def test_curves_and_area_under_the_budget_curve(stored):
    from core.tools.report import load_rows

    (key, curves), = group_curves(load_rows(stored)).items()
    entropy = {c.method: c for c in curves}["entropy"]
    assert entropy.mean.tolist() == [41, 54, 66] and entropy.std.tolist() == [1, 1, 1]
    # seed 0: trapezoids over fractions 0.1-0.3: ((40+55)/2*0.1 + (55+65)/2*0.1) / 0.2 = 53.75
    assert entropy.area().tolist() == pytest.approx([53.75, 53.75])


def test_report_regenerates_figure_and_tables_without_training(stored, tmp_path):
    written = write_report(stored, tmp_path / "report")
    names = sorted(p.name for p in written)
    assert names == ["report.md", "vaal_fig2_cifar10_mini.md", "vaal_fig2_cifar10_mini.png",
                     "vaal_fig2_cifar10_mini_vs_random.png"]
    table = (tmp_path / "report" / "vaal_fig2_cifar10_mini.md").read_text()
    assert "| entropy | 41.00 ± 1.00 | 54.00 ± 1.00 | 66.00 ± 1.00 | 53.75 ± 0.00 | 2 |" in table
    assert (tmp_path / "report" / "vaal_fig2_cifar10_mini.png").stat().st_size > 10_000


BUDGETS = (1000, 2000, 3000, 4000, 5000)
SEED_OFFSET = (0.5, -1.0, 1.5, 0.0, -0.8)      # random's seed-to-seed spread
NOISE = (0.3, -0.3, 0.2, -0.2, 0.0)            # per-seed noise of a method around its effect; mean exactly 0
EFFECTS = {"random": (0, 0, 0, 0, 0), "copy": (0, 0, 0, 0, 0), "better": (3, 3, 3, 3, 3),
           "late": (0, 0, 0, 3, 3)}           # points over random at each budget


def write_synthetic(folder, seeds=5, experiment="fig2_cifar10"):
    """Known effects: 'better' is random + 3 points at every budget, 'late' only at the last two, 'copy' is
    random exactly."""
    for method, effect in EFFECTS.items():
        noise = (0,) * 5 if method in ("random", "copy") else NOISE
        for seed in range(seeds):
            values = [40 + 5 * k + SEED_OFFSET[seed] + effect[k] + noise[seed] for k in range(len(BUDGETS))]
            rows = [row(method, seed, n, value, experiment=experiment) for n, value in zip(BUDGETS, values)]
            write_atomic(folder / method / f"seed{seed}" / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return folder


def synthetic_curves(folder):
    (_, curves), = group_curves(load_rows(folder)).items()
    return {c.method: c for c in curves}


def load_rows(folder):
    from core.tools.report import load_rows

    return load_rows(folder)


def test_a_three_point_effect_over_five_seeds_is_marked_at_every_budget(tmp_path):
    curves = synthetic_curves(write_synthetic(tmp_path))
    better = budget_comparisons(curves["better"], curves["random"], Stats())
    assert sorted(better) == list(BUDGETS) and all(c.verdict == 1 and c.mark == "▲" for c in better.values())
    # differences 3.3, 2.7, 3.2, 2.8, 3.0: sd 0.255, t(0.975, 4) = 2.7764 -> 3 ± 0.3166
    first = better[1000]
    assert first.seeds == 5 and first.mean == pytest.approx(3.0)
    assert (first.low, first.high) == pytest.approx((2.6834, 3.3166), abs=1e-4) and first.p < 1e-4
    assert all(c.verdict == -1 for c in budget_comparisons(curves["random"], curves["better"], Stats()).values())


def test_an_identical_copy_is_never_marked(tmp_path):
    curves = synthetic_curves(write_synthetic(tmp_path))
    for test in ("t", "wilcoxon"):
        copies = budget_comparisons(curves["copy"], curves["random"], Stats(test))
        assert all(c.verdict == 0 and c.p == 1.0 and c.mean == 0 and c.mark == "" for c in copies.values())


def test_penalty_matrix_of_the_known_effects(tmp_path):
    penalty = penalty_matrix(list(synthetic_curves(write_synthetic(tmp_path)).values()), Stats())
    assert penalty.methods == ["better", "copy", "late", "random"]
    # the initial budget is not judged: 4 budgets; 'late' leads at 2 of them
    assert penalty.budgets == [2000, 3000, 4000, 5000] and penalty.too_few_seeds == []
    expected = [[math.nan, 1, 0.5, 1], [0, math.nan, 0, 0], [0, 0.5, math.nan, 0.5], [0, 0, 0, math.nan]]
    np.testing.assert_array_equal(penalty.matrix, np.array(expected))


def test_penalty_matrix_judges_only_budgets_every_pair_reached_with_three_seeds(tmp_path):
    curves = synthetic_curves(write_synthetic(tmp_path))
    for curve in curves.values():
        curve.values[3:, 3:] = np.nan            # seeds 3 and 4 still running at 4,000 and 5,000 labels
    curves["late"].values[2, 3:] = np.nan         # and 'late' seed 2 too: only 2 seeds there
    penalty = penalty_matrix(list(curves.values()), Stats())
    assert penalty.budgets == [2000, 3000] and penalty.too_few_seeds == [4000, 5000]
    assert penalty.matrix[0, 3] == 1 and penalty.matrix[2, 3] == 0


def test_report_has_marks_matrix_and_improvement_figure(tmp_path):
    written = write_report(write_synthetic(tmp_path / "runs"), tmp_path / "out")
    assert {p.name for p in written} >= {"vaal_fig2_cifar10_mini_vs_random.png", "vaal_fig2_cifar10_mini_penalty.png"}
    table = (tmp_path / "out" / "vaal_fig2_cifar10_mini.md").read_text()
    assert "| better − random | 5 | +3.00 [+2.68, +3.32] p<0.001 ▲ |" in table
    assert "| copy − random | 5 | +0.00 [+0.00, +0.00] p=1.000 |" in table
    assert "| late | 0.00 | 0.50 | - | 0.50 |" in table and "| column mean | 0.00 | 0.50 | 0.17 | 0.50 |" in table
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("## Summary")
    assert "| better | 53.04 ± 1.09 (n=5) ▲ | 63.04 ± 1.09 (n=5) ▲ |" in report
    assert "| copy | 50.04 ± 0.91 (n=5) | 60.04 ± 0.91 (n=5) |" in report


def test_fewer_than_three_seeds_gives_no_marks_and_says_why(tmp_path):
    curves = synthetic_curves(write_synthetic(tmp_path / "runs", seeds=2))
    assert all(c.verdict is None and c.mark == "" and math.isnan(c.p)
               for c in budget_comparisons(curves["better"], curves["random"], Stats()).values())
    written = write_report(tmp_path / "runs", tmp_path / "out")
    assert not any(p.name.endswith("_penalty.png") for p in written)
    table = (tmp_path / "out" / "vaal_fig2_cifar10_mini.md").read_text()
    assert f"No significance marks: {TOO_FEW_SEEDS} and these comparisons rest on 2." in table
    assert "Not computed" in table and "▲" not in table and "▼" not in table
    assert "| better | 52.75 ± 1.05 (n=2) n<3 |" in (tmp_path / "out" / "report.md").read_text()


def test_the_demo_compares_three_methods_with_random_over_enough_seeds_to_mark():
    from core.lib.experiments import get_experiment
    from core.tools.commands.demo import DEMO, DEMO_PROFILES

    methods = DEMO["methods"].split(",")
    assert "random" in methods and len(methods) >= 3
    for profile, _ in DEMO_PROFILES.values():
        assert get_experiment(DEMO["paper"], DEMO["experiment"]).config(profile).seeds >= 3


def test_one_seed_still_draws_the_improvement_over_random(tmp_path):
    written = {p.name for p in write_report(write_synthetic(tmp_path / "runs", seeds=1), tmp_path / "out")}
    assert "vaal_fig2_cifar10_mini_vs_random.png" in written and "vaal_fig2_cifar10_mini_penalty.png" not in written
    table = (tmp_path / "out" / "vaal_fig2_cifar10_mini.md").read_text()
    assert "| better − random | 1 | +3.30 | +3.30 | +3.30 | +3.30 | +3.30 | +3.30 |" in table


def test_wilcoxon_on_five_seeds_cannot_mark_and_the_report_says_so(tmp_path):
    curves = synthetic_curves(write_synthetic(tmp_path / "runs"))
    comparison = compare_seeds(curves["better"].at(3000), curves["random"].at(3000), Stats("wilcoxon"))
    assert comparison.p == pytest.approx(0.0625) and comparison.verdict == 0
    table = pairwise_table(list(curves.values()), Stats("wilcoxon"))
    assert "cannot go below p = 0.0625" in table and "▲" not in table.split("| A − B")[1]


def test_several_folders_make_one_summary_table(tmp_path):
    write_synthetic(tmp_path / "a")
    write_synthetic(tmp_path / "b", seeds=2, experiment="fig4_cifar100")
    write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    header = next(line for line in (tmp_path / "out" / "report.md").read_text().splitlines()
                  if line.startswith("| method"))
    assert header == ("| method | vaal/fig2_cifar10 (mini) AUBC | vaal/fig2_cifar10 (mini) final accuracy (5,000) "
                      "| vaal/fig4_cifar100 (mini) AUBC | vaal/fig4_cifar100 (mini) final accuracy (5,000) |")
    assert "| better | 53.04 ± 1.09 (n=5) ▲ | 63.04 ± 1.09 (n=5) ▲ | 52.75 ± 1.05 (n=2) n<3 |" in \
        (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "vaal_fig4_cifar100_mini.md").exists()


def test_penalty_matrices_add_up_over_experiments(tmp_path):
    write_synthetic(tmp_path / "a")
    write_synthetic(tmp_path / "b", experiment="fig4_cifar100")
    experiments = collect([tmp_path / "a", tmp_path / "b"])
    methods, total, counted = summed_penalty(experiments, Stats())
    assert methods == ["better", "copy", "late", "random"] and total[0, 2] == 1.0 and total[2, 3] == 1.0
    assert (counted == 2 * (1 - np.eye(4))).all()
    table = summed_penalty_table(experiments, Stats())
    assert "| better | - | 2.00 / 2 | 1.00 / 2 | 2.00 / 2 |" in table
    assert "| beaten | 0.00 | 0.50 | 0.17 | 0.50 |" in table
    assert summed_penalty_table(experiments[:1], Stats()) == ""


def test_several_folders_need_an_output_folder(tmp_path, capsys):
    from core.tools.cli import main

    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--test", "wilcoxon"]) == 2
    assert capsys.readouterr().err == "error: several results folders are reported together into one place: " \
                                      "pass --out DIR\n"
    assert main(["report", str(tmp_path), "--alpha", "5"]) == 2
    assert capsys.readouterr().err == "error: --alpha must be between 0 and 1, not 5.0\n"


def test_compare_uses_paper_profile_rows_only():
    rows = [row("vaal", s, 20000, v, profile="paper") for s, v in enumerate((80.0, 81.0))]
    rows[0]["fraction_labeled"] = rows[1]["fraction_labeled"] = 0.4
    rows += [dict(rows[0], profile="mini", value=10.0)]
    comparisons, uncovered = compare(rows)
    (match,) = comparisons
    assert match.reported.value == 80.9 and match.mean == 80.5 and match.within is True and uncovered == 0
    assert "| vaal | fig2_cifar10 | vaal | 40% | 80.90 | 80.50 ± 0.50 (n=2) | -0.40 | ±2 | yes |" in \
        comparison_table(comparisons)


def test_out_of_tolerance_is_flagged():
    rows = [dict(row("vaal", 0, 20000, 70.0, profile="paper"), fraction_labeled=0.4)]
    (match,), _ = compare(rows)
    assert match.within is False and "| NO |" in comparison_table([match])


def test_registry_entries_name_their_source_and_protocol():
    assert len(REPORTED) > 60
    for entry in REPORTED:
        assert entry.source and entry.protocol and entry.paper in {"vaal", "ta_vaal", "daal", "lada", "baselines"}


def test_registry_series_hold_one_point_per_method_and_budget_and_one_checked_point_per_budget():
    """A series is the points of one source (the LL4AL paper's figure, Mephisto405's reproduction beside it);
    a budget holds one point of a series, and at most one point with a tolerance, so verify judges it once."""
    from collections import Counter

    def key(r):
        return r.paper, r.experiment, r.metric, r.method, r.labels, r.fraction

    in_series = Counter((r.source, *key(r)) for r in REPORTED)
    assert [point for point, count in in_series.items() if count > 1] == []
    checked = Counter(key(r) for r in REPORTED if r.tolerance is not None)
    assert [point for point, count in checked.items() if count > 1] == []


def test_registry_reads_ll4al_and_places_caltech256_and_ta_vaal_by_label_count():
    from core.tools.reported import LL4AL_PAPER, LL4AL_REPRODUCTION

    ll4al = {(r.source, r.method, r.labels): r for r in REPORTED if r.experiment == "ll4al_cifar10"}
    paper_ll = [ll4al[LL4AL_PAPER, "learning_loss", n].value for n in range(1000, 11000, 1000)]
    assert paper_ll == [51.1, 65.2, 76.4, 82.0, 85.1, 86.9, 88.0, 89.2, 90.2, 91.0]
    assert [ll4al[LL4AL_PAPER, m, 2000].value for m in ("random", "coreset")] == [62.1, 63.4]
    assert all(r.plot for r in ll4al.values())
    assert {r.tolerance for (source, _, _), r in ll4al.items() if source == LL4AL_REPRODUCTION} == {None}
    assert ll4al[LL4AL_REPRODUCTION, "random", 1000].value == 48.0
    (caltech,) = [r for r in REPORTED if r.experiment == "fig2_caltech256"]
    rows = [dict(row("vaal", 0, 7650, 83.0, profile="paper", experiment="fig2_caltech256"),
                 fraction_labeled=7650 / 27607)]              # 28% of the project's training split
    (match,), _ = compare(rows)
    assert match.reported is caltech and match.within is None
    rows = [dict(row("ta_vaal_independent", 0, 20000, 60.0, profile="paper", paper="ta_vaal",
                     experiment="supp_fig1_independent_cifar100"), fraction_labeled=0.4)]
    (match,), _ = compare(rows)
    assert match.reported.value == 68.83 and match.reported.tolerance is None and "20,000" in match.reported.source
