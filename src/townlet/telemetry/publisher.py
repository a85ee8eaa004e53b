"""The publisher: a ``telemetry`` phase that encodes each tick once and hands it to every transport.

Attach it to a simulation and it installs one timed phase after the last existing one; detach it and the
phase goes away, so a town nobody watches pays nothing. It also reports health: the simulation's rolling tick
timings (``perf``, see :mod:`townlet.sim.timings`), each transport's health, the drop-rate watch that logs one
warning and publishes one ``alert`` event per episode of loss, and the periodic ``tick.health`` log line
(:mod:`townlet.telemetry.health`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from townlet.config.models import TelemetryConfig
from townlet.logs import log_event
from townlet.sim import sidecars
from townlet.telemetry.encoder import TelemetryEncoder
from townlet.telemetry.health import HealthLog
from townlet.telemetry.transports import Transport, build_transport

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

log = logging.getLogger("townlet.telemetry")
PHASE = "telemetry"


class DropWatch:
    """Drop rate of one transport over a sliding window of ticks, with episodes of loss.

    An episode starts when the rate reaches ``threshold`` (one warning log, one alert event) and ends when
    it falls below half of it, so a lasting loss is reported once, not once per tick.
    """

    def __init__(self, window: int, threshold: float) -> None:
        self.history: deque[tuple[int, int]] = deque(maxlen=window + 1)
        self.threshold = threshold
        self.rate = 0.0
        self.in_loss = False
        self.alerts = 0

    def update(self, offered: int, dropped: int) -> str | None:
        """Fold cumulative counts; returns ``"start"`` or ``"end"`` when an episode changes."""
        self.history.append((offered, dropped))
        first_offered, first_dropped = self.history[0]
        sent = offered - first_offered
        self.rate = min((dropped - first_dropped) / sent, 1.0) if sent > 0 else 0.0
        if not self.in_loss and self.rate >= self.threshold:
            self.in_loss = True
            self.alerts += 1
            return "start"
        if self.in_loss and self.rate < self.threshold / 2:
            self.in_loss = False
            return "end"
        return None


class TelemetryPublisher:
    """Publishes a simulation's telemetry to its transports, one batch per tick.

    Args:
        sim: The simulation to read.
        cfg: The ``telemetry`` config section (the simulation's own when None).
        transports: Transports to publish to (besides those built from ``cfg.transports`` by
            :meth:`from_config`).
    """

    def __init__(
        self, sim: Simulation, cfg: TelemetryConfig | None = None, transports: Iterable[Transport] = ()
    ) -> None:
        self.sim = sim
        self.cfg = cfg or sim.config.telemetry
        self.encoder = TelemetryEncoder(sim, self.cfg)
        self.health_log = HealthLog(self.cfg.health_log_s)
        self.transports: list[Transport] = []
        self.watches: dict[str, DropWatch] = {}
        self.attached = False
        self.published = 0
        for transport in transports:
            self.add_transport(transport)
        sidecars.attach(sim, "telemetry", self)  # its sequence travels in snapshots (a resumed one continues)

    @classmethod
    def from_config(cls, sim: Simulation, cfg: TelemetryConfig | None = None) -> TelemetryPublisher:
        """A publisher with every transport listed in the config."""
        cfg = cfg or sim.config.telemetry
        return cls(sim, cfg, [build_transport(t) for t in cfg.transports])

    # -- wiring -------------------------------------------------------------------------------------

    def add_transport(self, transport: Transport) -> Transport:
        """Add a transport (started at once when already attached); names are made unique."""
        names = {t.name for t in self.transports}
        base, n = transport.name, 2
        while transport.name in names:
            transport.name = f"{base}-{n}"
            n += 1
        self.transports.append(transport)
        self.watches[transport.name] = DropWatch(self.cfg.drop_window, self.cfg.drop_alert_rate)
        if self.attached:
            transport.start()
        return transport

    def remove_transport(self, transport: Transport, timeout: float = 5.0) -> None:
        """Close and forget a transport."""
        if transport in self.transports:
            self.transports.remove(transport)
            self.watches.pop(transport.name, None)
            transport.close(timeout)

    def attach(self) -> TelemetryPublisher:
        """Install the ``telemetry`` phase after the last phase and start the transports."""
        if self.attached:
            return self
        for transport in self.transports:
            transport.start()
        last = self.sim.phases[-1][0]
        self.sim.add_phase(PHASE, TelemetryPublisher._phase_of(self), after=last)
        self.attached = True
        return self

    @staticmethod
    def _phase_of(publisher: TelemetryPublisher) -> Any:
        def telemetry(sim: Simulation) -> None:
            publisher.publish()

        return telemetry

    def detach(self) -> None:
        """Remove the phase (transports stay open; see :meth:`close`)."""
        if self.attached:
            self.sim.phases = [(n, p) for n, p in self.sim.phases if n != PHASE]
            self.sim.phase_total.pop(PHASE, None)
            self.attached = False

    def close(self, timeout: float = 10.0) -> None:
        """Detach, flush every transport and close it."""
        self.detach()
        for transport in list(self.transports):
            transport.close(timeout)

    # -- each tick ----------------------------------------------------------------------------------

    def publish(self) -> None:
        """Encode the tick just simulated and offer it to every transport (never blocks)."""
        tick = int(self.sim.world.tick)
        alerts = self._watch_drops(tick)
        if self.health_log.due(tick):
            self.health_log.emit(tick, self.sim.perf(), self.transport_health())
        if not any(transport.wants() for transport in self.transports):
            self.encoder.skip()  # nobody listens (a viewer-less WebSocket server): fold the windows only
            return
        sections = None
        every = self.cfg.health_every
        if every and (self.encoder.state is None or tick % every == 0):  # a snapshot is due, or the cadence
            sections = {"perf": self.sim.perf(), "transports": self.transport_health()}
        batch = self.encoder.encode(alerts, sections)
        for transport in self.transports:
            transport.put(batch)
        self.published += 1

    def _watch_drops(self, tick: int) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        for transport in self.transports:
            watch = self.watches[transport.name]
            offered, dropped = transport.counts()
            change = watch.update(offered, dropped)
            if change == "start":
                detail = (
                    f"telemetry loss on {transport.name}: {watch.rate:.0%} of messages dropped "
                    f"over the last {self.cfg.drop_window} ticks"
                )
                log_event(
                    log,
                    "telemetry.drop_alert",
                    tick,
                    logging.WARNING,
                    transport=transport.name,
                    drop_rate=round(watch.rate, 4),
                    dropped=dropped,
                    offered=offered,
                )
                alerts.append(
                    {
                        "type": "event",
                        "tick": tick,
                        "kind": "alert",
                        "value": round(watch.rate, 4),
                        "detail": detail,
                        "transport": transport.name,
                    }
                )
            elif change == "end":
                log_event(
                    log,
                    "telemetry.loss_recovered",
                    tick,
                    transport=transport.name,
                    drop_rate=round(watch.rate, 4),
                    dropped=dropped,
                )
        return alerts

    # -- snapshots ----------------------------------------------------------------------------------

    def sidecar_state(self) -> dict[str, Any]:
        """The telemetry sequence for a snapshot: ticks published, then the encoder's windows and narration."""
        return {"published": self.published, **self.encoder.sidecar_state()}

    def restore_sidecar(self, state: dict[str, Any]) -> None:
        """Continue the sequence a snapshot recorded (the next message is a snapshot, as for any new consumer).

        Raises:
            ValueError: state that does not fit this publisher.
        """
        state = dict(state)
        published = state.pop("published", None)
        if type(published) is not int or published < 0:
            raise ValueError("telemetry.published must be a count")
        self.encoder.restore_sidecar(state)
        self.published = published

    # -- health -------------------------------------------------------------------------------------

    def transport_health(self) -> dict[str, Any]:
        """Every transport's health, with its drop rate and episodes of loss."""
        out: dict[str, Any] = {}
        for transport in self.transports:
            watch = self.watches[transport.name]
            out[transport.name] = {
                **transport.health(),
                "drop_rate": round(watch.rate, 4),
                "in_loss": watch.in_loss,
                "alerts": watch.alerts,
            }
        return out

    def health(self) -> dict[str, Any]:
        """The health payload: tick, transports, and the tick timings of the last window (always fresh)."""
        return {
            "tick": int(self.sim.world.tick),
            "published": self.published,
            "transports": self.transport_health(),
            "perf": self.sim.perf(),
        }
