"""Perturbations (SPEC 9): price spikes, blackouts, water outages, closed facilities and arranged meets."""

from townlet.perturbations.kinds import CITY_KINDS, KINDS, Perturbation
from townlet.perturbations.schedule import Perturbations

__all__ = ["CITY_KINDS", "KINDS", "Perturbation", "Perturbations"]
