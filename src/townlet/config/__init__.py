"""Configuration: typed models, YAML loading with overrides, config_id, feature flags, map files."""

from townlet.config.errors import ConfigError
from townlet.config.loader import LoadedConfig, load_config
from townlet.config.models import TownletConfig

__all__ = ["ConfigError", "LoadedConfig", "TownletConfig", "load_config"]
