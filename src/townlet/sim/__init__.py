"""The simulation: the tick loop, RNG streams, phase timings, KPIs and the state hash."""

from townlet.sim.simulation import Simulation, TickResult

__all__ = ["Simulation", "TickResult"]
