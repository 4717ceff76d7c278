"""The library layer: what a paper folder builds on. Paper folders import it from here, and from nowhere else
in core.lib, so that these names stay put when the modules behind them move:

    from core.lib import ScoringStrategy, register_method, smoke_profile

Each name is imported from its module on first use, so that the command line starts without loading PyTorch.
The modules of core.lib import each other directly and never this one, nor anything of core.tools.
"""
import importlib

PUBLIC = {
    "config": ("DataConfig", "ExperimentConfig", "ModelConfig", "ProtocolConfig", "TrainConfig", "from_dict",
               "set_value"),
    "datasets": ("IMAGENET_STATS", "DatasetSpec", "ImageDataset", "Split", "dataset_spec", "decode_cached",
                 "load_dataset", "register_dataset", "resolve_data_root"),
    "errors": ("UserError",),
    "evaluation": ("IGNORE_LABEL", "autocast", "class_last", "evaluate", "image_scores", "map_batches", "predict",
                 "softmax_scores", "without_autocast"),
    "experiments": ("Experiment", "get_experiment", "mini_profile", "register_experiment",
                    "register_experiments", "register_extra", "smoke_profile"),
    "fastpaths": ("inference",),
    "game": ("Endless", "GameState", "play"),
    "loop": ("RunSettings", "new_model", "prepare_dataset", "prepare_job", "resolve_count", "run_cycles"),
    "networks": ("CifarResNet18", "TaskNetwork", "build_network", "initialise", "parameter_count",
                 "register_architecture", "scaled"),
    "parallel": ("is_main", "rank_rows"),
    "pool": ("Pool", "candidate_subset"),
    "results": ("RunFolder", "read_jsonl", "write_atomic"),
    "seeding": ("numpy_rng", "seed_everything", "stream_key"),
    "sources": ("Augmentation", "index_batches", "loader_batches"),
    "strategy": ("STRATEGIES", "CycleContext", "CycleSizes", "CycleWork", "NetworkUse", "ScoringStrategy", "Strategy",
                 "register_method"),
    "trainer": ("TrainHook", "Trainer", "make_optimizer"),
}
MODULE_OF = {name: module for module, names in PUBLIC.items() for name in names}
__all__ = sorted(MODULE_OF)


def __getattr__(name: str):
    if name not in MODULE_OF:
        raise AttributeError(f"core.lib has no public name {name!r}; the public names are core.lib.__all__")
    value = getattr(importlib.import_module(f"core.lib.{MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
