"""Townlet: an always-on small-town life simulation for multi-agent reinforcement learning."""

__version__ = "0.1.0"
