"""Runs that outlive their connection: a producer per run, a log of its frames, readers.

    frames     the SSE frame of an event, with its `id: <run>-<seq>` line
    log        MemoryLog (this process's frames of one run) and the SharedLog interface that a
               backend (scaleout/, on Redis) implements so other processes can join
    live       LiveRun: the producer task that drains `Run.events()` into the log, the readers'
               count, the detached grace, Stop
    registry   Runs: this process's runs by id, retention, the Idempotency-Key table, bounds

A response (web/stream.py) is a reader of a run; so are a joined stream, the buffered JSON
answer and each streaming-lab mode.
"""
