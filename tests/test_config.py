import pytest

from core.lib.config import HASH_SCHEME, ExperimentConfig, apply_overrides, run_hash, set_value
from core.lib.errors import UserError
from core.lib.experiments import EXPERIMENTS, SIZE_PROFILES, get_experiment, papers
from core.tools.arguments import parse_assignments

SIZE_KEYS = {"data.train_subset", "data.test_subset", "data.validation_size", "data.test_size", "data.image_size",
             "data.resize", "data.workers", "model.width", "protocol.cycles", "protocol.initial", "protocol.budget",
             "protocol.subset", "train.iterations", "train.epochs", "train.milestones", "train.validate_every",
             "train.eval_batch_size", "train.batch_size", "seeds", "protocol.fraction_base"}
OFFLINE_KEYS = {"model.pretrained"}      # weights that need a download: offline profiles start from random init


def test_profiles_change_only_sizes():
    papers()
    for experiment in EXPERIMENTS.values():
        for profile in SIZE_PROFILES:
            overrides = experiment.profiles.get(profile, {})
            keys = {k for k in overrides
                    if not (k.startswith("method_options.") and k.endswith((".iterations", "_epochs", ".subset")))}
            assert keys <= SIZE_KEYS | OFFLINE_KEYS, (experiment.name, profile, keys - SIZE_KEYS)


def test_overrides_are_coerced_from_strings():
    config = ExperimentConfig(train=ExperimentConfig().train)
    set_value(config, "train.lr", "0.01")
    set_value(config, "train.milestones", "80,120")
    set_value(config, "train.reinit", "false")
    set_value(config, "method_options.mc_dropout.passes", 20)
    assert config.train.lr == 0.01 and config.train.milestones == [80, 120] and config.train.reinit is False
    assert config.method_options == {"mc_dropout": {"passes": 20}}


@pytest.mark.parametrize("key,value,message", [
    ("train.lr", "abc", "must be float"),
    ("train.epochs", "2.5", "must be int"),
    ("train.nope", "1", "unknown config key"),
    ("nope.lr", "1", "unknown config key"),
    ("train.optimizer", "rmsprop", "is not one of"),
])
def test_bad_values_are_one_line_user_errors(key, value, message):
    config = get_experiment("vaal", "fig2_cifar10").config("smoke")
    with pytest.raises(UserError, match=message) as err:
        apply_overrides(config, {key: value})
    assert "\n" not in str(err.value)


def test_parse_assignments_rejects_missing_equals():
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_assignments(["train.lr"])


def test_run_hash_ignores_other_methods_and_seed_count():
    a = get_experiment("vaal", "fig2_cifar10").config("smoke")
    b = get_experiment("vaal", "fig2_cifar10").config("smoke", {"seeds": 4, "methods": "random"})
    assert run_hash(a, "random") == run_hash(b, "random")
    c = get_experiment("vaal", "fig2_cifar10").config("smoke", {"train.lr": 0.1})
    assert run_hash(a, "random") != run_hash(c, "random")


def test_vaal_paper_config_matches_tables_2_and_3():
    config = get_experiment("vaal", "fig2_cifar10").config("paper")
    assert (config.train.optimizer, config.train.lr, config.train.batch_size) == ("adam", 5e-4, 64)
    assert config.train.iterations == 78125 and config.data.validation_size == 5000
    assert (config.protocol.initial, config.protocol.budget, config.protocol.cycles) == (0.1, 0.05, 7)
    assert config.model.init == "xavier" and config.seeds == 5


def test_run_hash_is_pinned_under_its_definition():
    """VAAL Fig. 2's hash under run-hash definition 2 (config.HASH_SCHEME): a change of what is hashed must
    raise HASH_SCHEME, so that older folders are refused as such. Runtime settings never change the hash; a
    method option written at its default gives the hash of leaving it out; a changed train key does."""
    assert HASH_SCHEME == 2
    fig2 = get_experiment("vaal", "fig2_cifar10")
    assert run_hash(fig2.config("paper"), "vaal") == "b04d7c35f808"
    assert run_hash(fig2.config("paper", {"runtime.checkpoint_every": 50}), "vaal") == "b04d7c35f808"
    assert run_hash(fig2.config("paper", {"method_options.vaal.latent_dim": 32}), "vaal") == "b04d7c35f808"
    assert run_hash(fig2.config("paper", {"train.init_seed": "seed"}), "vaal") != "b04d7c35f808"
    assert run_hash(fig2.config("paper", {"train.drop_last_first_cycle": True}), "vaal") != "b04d7c35f808"
