"""The full-data reference line of the learning-curve figures (VAAL Fig. 2 "Top-1 accuracy" line): one task
model trained on every training image that is not held out for validation."""
from core.lib import Strategy, register_method, set_value


@register_method
class FullData(Strategy):
    name = "full_data"
    single_cycle = True

    def adjust_config(self, config, train_size: int):
        set_value(config, "protocol.initial", train_size - config.data.validation_size)
        set_value(config, "protocol.cycles", 1)
        return config
