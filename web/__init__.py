"""HTTP plumbing for app.py: body reading, the event-stream response, middleware, limits, logs.

Kept apart from `agent/` so the agent knows nothing about HTTP, and apart from app.py so
each piece is small enough to read on its own.
"""
