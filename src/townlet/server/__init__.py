"""The live server: a paced town with a WebSocket telemetry stream, the console API, health, metrics and a viewer.

:class:`~townlet.server.live.LiveTown` owns the clock (the simulation itself is never paced) and steps the
town on its own thread; :func:`~townlet.server.app.create_app` puts it behind HTTP (FastAPI).
"""
