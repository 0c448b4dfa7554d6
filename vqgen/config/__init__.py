"""Configs: the schema of every key (schema.py), variants (variants.py), validation (validation.py), settings
that config files share (recipes.py), loading (files.py) and what may change when a run resumes (resume.py).
Config files use it as `from vqgen import config as config_lib`.

This package turns nothing into modules: `vqgen/stages/` is the one place a config becomes constructor arguments.
"""

from vqgen.config.files import (PRIOR_CONFIGS, config_from_saved, configs_dir, load_config, load_workdir_config,
                                prior_config_path)
from vqgen.config.resume import MAY_CHANGE, check_resume
from vqgen.config.schema import (COMPUTE_DTYPES, PRE_QUANT_NORMS, RECONSTRUCTION, STAGES, ConfigError,
                                 add_training_sections, classifier_config, contrastive_config,
                                 optimizer_section,
                                 perceptual_network_config, prior_config, quantizer_config, tokenizer_config)
from vqgen.config.recipes import (DATA_SOURCES_256, DATA_SOURCES_CIFAR10, check_cifar10_source,
                                  check_imagenet_source, use_cifar10, use_cifar10_prior, use_cifar10_vqgan_objective, use_prior_family,
                                  use_imagenet256, use_imagenet_gan, use_imagenet_prior, use_vqgan_objective)
from vqgen.config.validation import validate
from vqgen.config.variants import PRIOR_VARIANTS, boolean, levels_from_string, parse_variant

__all__ = ["COMPUTE_DTYPES", "DATA_SOURCES_256", "DATA_SOURCES_CIFAR10", "ConfigError", "MAY_CHANGE", "config_from_saved",
           "PRE_QUANT_NORMS", "PRIOR_CONFIGS", "PRIOR_VARIANTS", "RECONSTRUCTION", "STAGES", "add_training_sections",
           "boolean", "check_cifar10_source", "check_imagenet_source", "check_resume", "classifier_config",
           "contrastive_config",
           "configs_dir", "levels_from_string", "load_config", "load_workdir_config", "optimizer_section",
           "parse_variant", "perceptual_network_config", "prior_config", "prior_config_path", "quantizer_config",
           "tokenizer_config", "use_cifar10", "use_cifar10_prior", "use_cifar10_vqgan_objective", "use_imagenet256",
           "use_imagenet_gan", "use_imagenet_prior", "use_prior_family", "use_vqgan_objective", "validate"]
