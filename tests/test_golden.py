"""Golden results (issue 24): the smoke-profile rows of one experiment per paper, made with one thread, are
reproduced exactly on the platform that stored them. When a change is meant to alter results, regenerate them
(tests/golden/README.md)."""
import copy

import pytest

from tests.golden import (CASES, REGENERATE, differences, platform, platform_mismatch, produce, stored_platform,
                          stored_rows)


def test_the_golden_rows_are_reproduced_exactly(data_root):
    mismatch = platform_mismatch(stored_platform(), platform())
    if mismatch:
        pytest.skip(mismatch)
    changed = differences(stored_rows(), produce(data_root))
    if changed:
        pytest.fail(f"the golden rows changed (if the change is meant to alter results, run `{REGENERATE}` and "
                    "commit tests/golden/):\n" + "\n".join(changed), pytrace=False)


def test_a_change_is_named_by_experiment_cycle_and_field():
    stored = stored_rows()
    produced = copy.deepcopy(stored)
    produced["vaal"][1]["train_loss"] += 1e-5
    produced["segmentation"][0]["selected"][2] += 1
    produced["lada"][0]["diagnostics"]["tau_mean"] += 1e-5
    del produced["lada"][-1]
    assert differences(stored, stored) == []
    assert differences(stored, produced) == [
        f"vaal/fig2_cifar10 vaal seed 0 cycle 1 train_loss: {produced['vaal'][1]['train_loss']!r}, "
        f"stored {stored['vaal'][1]['train_loss']!r}",
        f"lada/table1_cifar10 lada seed 0: {len(stored['lada']) - 1} cycles, stored {len(stored['lada'])}",
        f"lada/table1_cifar10 lada seed 0 cycle 0 diagnostics.tau_mean: "
        f"{produced['lada'][0]['diagnostics']['tau_mean']!r}, stored {stored['lada'][0]['diagnostics']['tau_mean']!r}",
        f"segmentation/camvid entropy seed 0 cycle 0 selected: first differs at position 2 of "
        f"{len(stored['segmentation'][0]['selected'])}: {produced['segmentation'][0]['selected'][2]}, "
        f"stored {stored['segmentation'][0]['selected'][2]}",
    ]


def test_every_paper_has_stored_rows_of_every_cycle():
    stored = stored_rows()
    assert sorted(stored) == sorted(paper for paper, _, _ in CASES) == \
        ["baselines", "daal", "lada", "segmentation", "ta_vaal", "vaal"]
    for paper, experiment, method in CASES:
        rows = stored[paper]
        assert [row["cycle"] for row in rows] == list(range(len(rows))) and len(rows) >= 2
        assert {(row["experiment"], row["method"]) for row in rows} == {(experiment, method)}
        assert all(row["selected"] for row in rows[:-1]) and rows[-1]["selected"] == []


def test_another_platform_skips_naming_the_one_that_made_the_rows():
    made = {"torch": "2.14.1", "numpy": "2.4.6", "cpu_capability": "AVX2"}
    assert platform_mismatch(made, dict(made)) is None
    reason = platform_mismatch(made, {**made, "torch": "2.15.0"})
    assert reason == ("the golden rows were made with torch 2.14.1, numpy 2.4.6, cpu_capability AVX2; this is "
                      f"torch 2.15.0, numpy 2.4.6, cpu_capability AVX2: `{REGENERATE}` makes this platform's")
