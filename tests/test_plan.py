"""./reproduce.sh plan (core/tools/plan.py): counted FLOPs against hand counts, steps and sizes against the protocol,
the table's total against its rows, and the cost table of docs/planning.md against the command that generates it."""
import math
from decimal import Decimal
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from core.lib.experiments import get_experiment
from core.tools import plan
from core.tools.cli import main
from tests.conftest import assert_cli_refuses_in_one_line

PLANNING = Path(__file__).resolve().parent.parent / "docs" / "planning.md"


def printed_rows(text: str) -> tuple[list[list[str]], list[str]]:
    """The job rows and the TOTAL row of a printed markdown table, as cells."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    body = [row for row in cells[1:] if row[0] != "TOTAL"]
    return body, next(row for row in cells if row[0] == "TOTAL")


def number(cell: str) -> Decimal:
    return Decimal(cell.replace(",", ""))


def test_total_equals_the_sum_of_the_rows(capsys):
    assert main(["plan", "vaal", "fig2_cifar10", "--methods", "vaal,ensemble_varratio,random", "--seeds", "2"]) == 0
    rows, total = printed_rows(capsys.readouterr().out)
    assert len(rows) == 6 and total[1] == "6 jobs"
    for column in range(2, 7):        # cycles, train steps, scored images, PFLOP, GPU-hours
        assert sum(number(row[column]) for row in rows) == number(total[column])
    assert all(number(row[6]) > 0 for row in rows)


def documented_table() -> str:
    lines = PLANNING.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| paper | experiment | methods |")))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def test_documented_summary_total_equals_the_sum_of_its_rows():
    rows, total = printed_rows(documented_table())
    assert len(rows) == int(total[1].split()[0])
    for column in (4, 5, 6):          # jobs, PFLOP, GPU-hours
        assert sum(number(row[column]) for row in rows) == number(total[column])


def test_a_linear_layer_counts_2_in_out_per_sample_forward_and_twice_that_with_its_weight_gradient():
    with torch.device("meta"):
        layer = nn.Linear(300, 70, bias=False)
        inputs = plan.batch(16, [(300,)])
        assert plan.counted_flops(layer, inputs, train=False) == 2 * 300 * 70 * 16
        # backward: the weight gradient only (the input needs none)
        assert plan.counted_flops(layer, inputs, train=True) == 2 * (2 * 300 * 70 * 16)


def test_a_two_layer_network_counts_forward_weight_and_input_gradients():
    with torch.device("meta"):
        network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                                nn.Linear(8 * 16 * 16, 10))
        inputs = plan.batch(4, [(3, 16, 16)])
        conv, linear = 2 * 3 * 8 * 9 * 16 * 16 * 4, 2 * 8 * 16 * 16 * 10 * 4
        assert plan.counted_flops(network, inputs, train=False) == conv + linear
        # forward, both weight gradients, and the linear layer's input gradient
        assert plan.counted_flops(network, inputs, train=True) == 2 * (conv + linear) + linear


def test_meta_tensors_count_what_real_ones_do():
    from core.lib.networks import build_network

    torch.manual_seed(0)
    real = build_network("resnet18_cifar", 10, 3, 0.0625)
    with torch.device("meta"):
        meta = build_network("resnet18_cifar", 10, 3, 0.0625)
        counted = plan.counted_flops(meta, plan.batch(2, [(3, 32, 32)]), train=True)
    assert counted == plan.counted_flops(real, [torch.zeros(2, 3, 32, 32)], train=True) > 0


def test_epoch_based_steps_grow_with_the_labeled_set():
    config = get_experiment("baselines", "ll4al_cifar10").config()      # 200 epochs, batch 128, 1,000 + 1,000 per cycle
    job = plan.method_job(config, "random", plan.data_shape(config))
    assert job.train_steps == sum(200 * math.ceil(1000 * (c + 1) / 128) for c in range(10))
    dropped = get_experiment("baselines", "ll4al_cifar10").config(overrides={"train.drop_last": "true"})
    assert plan.method_job(dropped, "random", plan.data_shape(dropped)).train_steps == \
        sum(200 * (1000 * (c + 1) // 128) for c in range(10))


def test_iteration_based_steps_are_cycles_times_iterations_and_a_committee_trains_its_members():
    config = get_experiment("vaal", "fig2_cifar10").config()                # 78,125 iterations per cycle, 7 cycles
    data = plan.data_shape(config)
    vaal, random = plan.method_job(config, "vaal", data), plan.method_job(config, "random", data)
    assert vaal.train_steps == 7 * 78125 and vaal.flops > 2 * random.flops      # the VAE game
    ensemble = plan.method_job(config, "ensemble_varratio", data)
    assert ensemble.train_steps == 7 * 78125 + 4 * 6 * 78125                     # 4 more members, 6 selections
    assert vaal.scored == sum(45000 - 5000 - 2500 * c for c in range(6)) and random.scored == 0


def test_sizes_without_data():
    imbalanced = plan.data_shape(get_experiment("ta_vaal", "supp_fig6b_cifar10_imb10").config())
    assert imbalanced.train == 5 * 5000 + 5 * 500
    caltech = plan.data_shape(get_experiment("ta_vaal", "supp_fig6c_caltech101").config())
    assert (caltech.train, caltech.test, caltech.train_hw) == (8677 - 1735, 1735, (224, 224))
    cityscapes = plan.data_shape(get_experiment("vaal", "fig3_cityscapes").config())
    assert (cityscapes.train, cityscapes.train_hw, cityscapes.eval_hw) == (2975, (688, 688), (1024, 2048))
    camvid = plan.data_shape(get_experiment("segmentation", "camvid").config("mini"))
    assert (camvid.train_hw, camvid.eval_hw) == ((112, 112), (120, 160))
    coarse = plan.data_shape(get_experiment("vaal", "fig2_cifar100").config(overrides={"data.labels": "coarse"}))
    assert (coarse.classes, coarse.train, coarse.test, coarse.train_hw) == (20, 50000, 10000, (32, 32))


def test_every_method_family_plans(capsys):
    """The cycle_work of every family names networks its networks() has, at shapes they accept."""
    for paper, experiment, profile in (("daal", "fig4_cifar10", "smoke"), ("lada", "table1_cifar10", "smoke"),
                                       ("lada", "table5_cifar10", "smoke"),
                                       ("ta_vaal", "supp_fig1_independent_cifar100", "lpm_for_all_methods")):
        assert main(["plan", paper, experiment, "--profile", profile, "--seeds", "1"]) == 0
        rows, _ = printed_rows(capsys.readouterr().out)
        assert all(number(row[5]) > 0 for row in rows)


def total_seconds(text: str) -> float:
    _, total = printed_rows(text)
    return float(number(total[6])) * 3600


def test_the_first_ll4al_cycle_is_priced_within_1_5x_of_the_22_8_s_it_took_on_the_h200(capsys):
    """Issue 21: baselines/ll4al_cifar10, random, seed 0, cycle 0 trained in 22.8 s on an H200 (1,600 steps)."""
    assert main(["plan", "baselines", "ll4al_cifar10", "--gpu", "h200", "--methods", "random", "--seeds", "1",
                 "--set", "protocol.cycles=1"]) == 0
    out = capsys.readouterr().out
    assert 22.8 / 1.5 <= total_seconds(out) <= 22.8 * 1.5
    assert "resnet18_cifar at 32 px measured on the H200: 13,100 images/s" in out


def test_other_gpus_scale_the_h200_rate_by_their_dense_peaks():
    config = get_experiment("baselines", "ll4al_cifar10").config(overrides={"protocol.cycles": 1})
    data, (job,) = plan.plan_jobs(config, ["random"], 1)
    h200, a100 = (job.seconds(plan.speed_for(config, data, name)) for name in ("h200", "a100"))
    assert a100 / h200 == pytest.approx(494.7 / 156.0)


def test_unmeasured_networks_say_which_rate_prices_them(capsys):
    assert main(["plan", "daal", "fig3_cifar10", "--methods", "random", "--seeds", "1"]) == 0
    assert "wrn28_2 (width 1) at 32 px is not measured: priced at the" in capsys.readouterr().out
    assert main(["plan", "vaal", "fig3_cityscapes", "--methods", "random", "--seeds", "1"]) == 0
    assert "drn_d_22 at 688 px is not measured: 40% of the dense peak" in capsys.readouterr().out


def test_measure_prices_training_and_evaluation_at_their_own_measured_rates(monkeypatch, capsys):
    speed = plan.Speed(1e12, 4e12, "measured now", "stub")
    monkeypatch.setattr(plan, "measure_speed", lambda *args: speed)
    monkeypatch.setattr(plan, "MEASURED_NOW", {})
    config = get_experiment("baselines", "ll4al_cifar10").config(overrides={"protocol.cycles": 1})
    _, (job,) = plan.plan_jobs(config, ["random"], 1)
    assert 0 < job.inferred_flops < job.flops
    assert main(["plan", "baselines", "ll4al_cifar10", "--measure", "--device", "cpu", "--methods", "random",
                 "--seeds", "1", "--set", "protocol.cycles=1"]) == 0
    expected = (job.flops - job.inferred_flops) / 1e12 + job.inferred_flops / 4e12
    shown = float(f"{expected / 3600:.2g}") * 3600                       # the table shows 2 significant digits
    assert total_seconds(capsys.readouterr().out) == pytest.approx(shown)


def test_measure_times_real_steps_on_the_cpu_at_smoke_size(capsys):
    assert main(["plan", "baselines", "ll4al_cifar10", "--profile", "smoke", "--measure", "--device", "cpu",
                 "--methods", "random", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "measured now on cpu" in out and "images/s training at batch 128" in out and total_seconds(out) > 0


@pytest.mark.parametrize("args,message", [
    (["plan", "vaal", "fig2_cifar10", "--gpu", "tpu"], "unknown --gpu 'tpu'; known: h100"),
    (["plan", "vaal"], "plan needs <paper> <experiment>"),
    (["plan", "vaal", "fig2_cifar10", "--utilisation", "0.4"], "unrecognized arguments: --utilisation"),
    (["plan", "--all", "--seeds", "2"], "plan --all covers every experiment at its paper profile"),
])
def test_bad_input_is_one_line(capsys, args, message):
    assert_cli_refuses_in_one_line(capsys, args, message)


@pytest.mark.slow
def test_documented_cost_table_is_the_generated_one():
    assert plan.summary() == documented_table()
