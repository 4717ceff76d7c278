
import pytest

from core.report import group_curves, write_report
from core.reported import REPORTED, compare, comparison_table
from core.results import append_jsonl, read_jsonl


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
    from core.results import load_rows

    (key, curves), = group_curves(load_rows(stored)).items()
    entropy = {c.method: c for c in curves}["entropy"]
    assert entropy.mean.tolist() == [41, 54, 66] and entropy.std.tolist() == [1, 1, 1]
    # seed 0: trapezoids over fractions 0.1-0.3: ((40+55)/2*0.1 + (55+65)/2*0.1) / 0.2 = 53.75
    assert entropy.area().tolist() == pytest.approx([53.75, 53.75])


def test_report_regenerates_figure_and_tables_without_training(stored, tmp_path):
    written = write_report(stored, tmp_path / "report")
    names = sorted(p.name for p in written)
    assert names == ["report.md", "vaal_fig2_cifar10_mini.md", "vaal_fig2_cifar10_mini.png"]
    table = (tmp_path / "report" / "vaal_fig2_cifar10_mini.md").read_text()
    assert "| entropy | 41.00 ± 1.00 | 54.00 ± 1.00 | 66.00 ± 1.00 | 53.75 ± 0.00 | 2 |" in table
    assert (tmp_path / "report" / "vaal_fig2_cifar10_mini.png").stat().st_size > 10_000


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
