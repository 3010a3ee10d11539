"""The scenario agent: everything between a validated request and a stream of events.

Pure: no HTTP library is imported here. `agent.run.Run.events()` yields the event objects
of `agent.events` (start, reasoning, chat, scenario_delta, scenario_patch, scenario, repair,
error, done); `web/stream.py` sends them as SSE frames or drains them into one JSON object.
Models are reached through the interface in `agent.model`; the backends are in `upstream/`.
"""
