"""Telemetry: the versioned schema, snapshot/diff encoding, the publisher, transports and their health.

Telemetry only reads the simulation. :class:`TelemetryPublisher` installs one timed phase (``telemetry``,
last in the tick) when attached; with nothing attached it costs nothing.
"""
