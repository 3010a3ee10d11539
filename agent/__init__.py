"""The scenario agent: everything between a validated request and a stream of events.

Nothing in this package knows about HTTP. `agent.run.Run.events()` yields plain dict
events (start, chat, scenario_delta, scenario, error, done); `app.py` turns them into
SSE frames or drains them into one JSON object.
"""
