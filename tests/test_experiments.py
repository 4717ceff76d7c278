"""Every registered experiment's protocol runs end to end in the smoke profile: on the shared data where it
exists, on tiny fixtures in the official layout where it does not (Caltech-256, ImageNet, Cityscapes, BDD100K,
SVHN). Every method is run end to end in tests/test_baselines.py."""
import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from core.lib.config import ExperimentConfig, apply_overrides
from core.lib.errors import UserError
from core.lib.experiments import EXPERIMENTS, method_status, papers, register_experiments
from core.lib.loop import RunSettings
from core.lib.plugins import REGISTRANTS
from core.tools.jobs import run_job
from core.tools.report import write_report
from tests.conftest import write_bdd100k_tree, write_cityscapes_tree, write_png_tree, write_svhn_mat
from tests.test_baselines import one_pass_options

papers()
FIXTURE_DATASETS = {"caltech256", "imagenet", "cityscapes", "bdd100k", "svhn"}
OWN_METHODS = {"vaal": ("vaal",), "ta_vaal": ("ta_vaal", "learning_loss_v2"),
               "lada": ("lada", "lada_fixed_ll4almix"),   # every lada method: test_baselines
               "daal": ("daal", "ll_rd")}                  # the paper's method first


def fixture_root(dataset: str, folder):
    if dataset == "cityscapes":
        return write_cityscapes_tree(folder)
    if dataset == "bdd100k":
        return write_bdd100k_tree(folder, size=(18, 32))     # 16:9 as BDD100K's 720 x 1280: resized to 48 x 85
    if dataset == "svhn":
        return write_svhn_mat(folder)
    if dataset == "caltech256":
        write_png_tree(folder / "caltech256" / "256_ObjectCategories", ["001.a", "002.b", "003.c"], 50, (40, 40))
    else:
        write_png_tree(folder / "imagenet" / "train", ["n01", "n02", "n03"], 50, (40, 40))
        write_png_tree(folder / "imagenet" / "val", ["n01", "n02", "n03"], 10, (40, 40))
    return folder


def own_methods(paper: str, implemented: list[str]) -> list[str]:
    """The paper's own methods that the experiment runs (entropy and random for the baselines' protocols), or
    else its first method."""
    return [m for m in OWN_METHODS.get(paper, ("entropy", "random")) if m in implemented] or implemented[:1]


def protocol_variants() -> set:
    """Experiments whose smoke config equals an earlier one's (in name order) but for the protocol (VAAL Fig. 5's
    budgets, noise and biased sets; DAAL Fig. 5's budgets; TA-VAAL's VAAL-budget figures): the default suite
    runs the first of each such family, -m slow every one."""
    seen, variants = set(), set()
    for key in sorted(EXPERIMENTS):
        config = dataclasses.asdict(EXPERIMENTS[key].config("smoke"))
        for name in ("experiment", "title", "source", "protocol"):
            config.pop(name)
        signature = json.dumps(config, sort_keys=True, default=str)
        (variants if signature in seen else seen).add(key if signature in seen else signature)
    return variants


def run_smoke(key, tmp_path, request, methods_of, cycles: int, one_pass: bool = False) -> None:
    """`one_pass`: the methods' own epoch loops cut to one pass (tests/test_baselines.py:one_pass_options)."""
    config = EXPERIMENTS[key].config("smoke", {"seeds": 1, "protocol.cycles": cycles})
    if config.data.dataset in FIXTURE_DATASETS:
        root = fixture_root(config.data.dataset, tmp_path / "data")
    else:
        root = request.getfixturevalue("data_root")
    settings = RunSettings(root, tmp_path / "out", torch.device("cpu"), "smoke", progress=False)
    implemented, _ = method_status(config)
    for method in sorted(methods_of(config.paper, implemented) & set(implemented)):
        run_config = apply_overrides(copy.deepcopy(config), one_pass_options(method)) if one_pass else config
        rows = run_job(run_config, method, 0, settings)
        assert len(rows) == cycles
        assert np.diff([r["n_labeled"] for r in rows]).min() > 0
    assert any(p.suffix == ".png" for p in write_report(tmp_path / "out"))


@pytest.mark.parametrize("key", [pytest.param(key, marks=pytest.mark.slow if key in protocol_variants() else ())
                                 for key in sorted(EXPERIMENTS)], ids="/".join)
def test_every_experiment_runs_in_the_smoke_profile(key, tmp_path, request):
    """Two cycles (one selection) of the paper's method, its own epoch loops cut to one pass: every protocol,
    dataset and report end to end (every method on its own: test_baselines). The full smoke runs, with the
    paper's other methods, random and entropy, three cycles: -m slow."""
    run_smoke(key, tmp_path, request, lambda paper, implemented: set(own_methods(paper, implemented)[:1]),
              cycles=2, one_pass=True)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(EXPERIMENTS), ids="/".join)
def test_every_experiment_runs_random_entropy_and_its_own_methods_for_three_cycles(key, tmp_path, request):
    run_smoke(key, tmp_path, request, lambda paper, implemented: {"random", "entropy", *OWN_METHODS.get(paper, ())},
              cycles=3)


def test_each_paper_registers_its_own_table_and_a_name_twice_in_a_table_is_refused_in_one_line():
    registrants = {key: REGISTRANTS[("experiment", key)] for key in EXPERIMENTS}
    assert set(registrants.values()) == {f"{paper}.experiments" for paper in ("baselines", "vaal", "ta_vaal", "daal",
                                                                               "lada")}
    assert registrants[("vaal", "fig3_cityscapes")] == registrants[("vaal", "fig4_bdd100k")] == "vaal.experiments"
    with pytest.raises(UserError) as refused:
        register_experiments("mine", [("a", ExperimentConfig, {}), ("b", ExperimentConfig, {}),
                                      ("a", ExperimentConfig, {})])
    assert str(refused.value) == "experiment 'mine/a' is in the table of mine twice; rename one of them"
    assert not [key for key in EXPERIMENTS if key[0] == "mine"]
