"""Configuration: the core options, the schema that adds plugin options, datasets files and environment loading."""

from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.config.datasets import DatasetEntry, default_text_embeds, parse_datasets
from simpletuner.core.config.loading import LoadedEnvironment, build_schema, load_config, load_environment
from simpletuner.core.config.schema import ConfigSchema, Layer, TrainingConfig

__all__ = [
    "ConfigSchema",
    "CoreOptions",
    "DatasetEntry",
    "Layer",
    "LoadedEnvironment",
    "TrainingConfig",
    "build_schema",
    "default_text_embeds",
    "load_config",
    "load_environment",
    "parse_datasets",
]
