"""Observations (SPEC 12): per-agent float32 vectors in three variants, written into preallocated buffers.

``ObservationEncoder(world, variant)`` owns a ``float32[capacity, size]`` buffer; ``encode()`` fills the rows
of every living agent at once. ``layout_of(world, variant)`` names every index; docs/observations.md is its
rendering. Read-only over the world.
"""

from townlet.observations.encoder import ObservationEncoder
from townlet.observations.layout import TARGETS, VARIANTS, Feature, FeatureLayout, layout_of

__all__ = ["TARGETS", "VARIANTS", "Feature", "FeatureLayout", "ObservationEncoder", "layout_of"]
