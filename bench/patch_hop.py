#!/usr/bin/env python3
"""The patch hop's cost (docs/token-path.md): a 3-operation patch answer fed in 4-character
deltas through the splitter and the operation reader, each operation applied to a working
copy of a 40 KB scenario, then the final validation.

    python3 bench/patch_hop.py

No sockets, no event loop: best of 5 timeit repeats per figure.
"""
import json
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from agent.patch import OperationReader, apply_operation, clone, describe_operation
from agent.splitter import Splitter
from agent.scenario import validate_modified

scenario = {"title": "Harbor", "summary": "s" * 200, "setting": "a port", "difficulty": "hard",
            "roles": [{"name": f"Role {i}", "description": "d" * 150} for i in range(40)],
            "steps": [{"title": f"Step {i}", "description": "x" * 300} for i in range(100)],
            "objectives": [f"objective {i}" for i in range(30)]}
size = len(json.dumps(scenario).encode())
ops = [{"op": "replace", "path": "/title", "value": "Blue Harbor Drill"},
       {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "Asks hard questions"}},
       {"op": "remove", "path": "/steps/3"}]
text = json.dumps(ops, indent=2)
answer = "Renamed it, added a journalist and dropped step 4.\n```patch\n" + text + "\n```\n"
patch_chunks = [text[i:i + 4] for i in range(0, len(text), 4)]
chunks = [answer[i:i + 4] for i in range(0, len(answer), 4)]  # ~4 characters a token

def reader_only():
    reader = OperationReader()
    for c in patch_chunks:
        reader.feed(c)
    reader.close()

def splitter_and_reader_and_apply():
    splitter, reader = Splitter(), OperationReader()
    working = clone(scenario)
    n = 0
    for c in chunks:
        for piece in splitter.feed(c):
            if piece.block is not None and piece.block.info == "patch":
                for op in reader.feed(piece[1]):
                    describe_operation(op, working)
                    working = apply_operation(working, op, n)
                    n += 1
    splitter.flush()
    reader.close()
    return working

def clone_only():
    clone(scenario)

def validate_only(result=splitter_and_reader_and_apply()):
    validate_modified(scenario, result, set())

for name, fn in [("reader alone, %d chunks" % len(patch_chunks), reader_only), ("splitter+reader+describe+apply (incl. one clone)", splitter_and_reader_and_apply),
                 ("clone of the %d-byte scenario" % size, clone_only), ("validate_modified of the result", validate_only)]:
    n = 200
    best = min(timeit.repeat(fn, number=n, repeat=5)) / n
    print(f"{name:55s} {best * 1e6:9.1f} µs per run   {best * 1e6 / 3:8.1f} µs per op")
print("answer:", len(answer), "chars;", len(chunks), "chunks; scenario", size, "bytes")

from agent.patch import PatchPreview
def preview_end_to_end():
    splitter, preview = Splitter(), PatchPreview(scenario)
    for c in chunks:
        for piece in splitter.feed(c):
            if piece.block is not None and piece.block.info == "patch":
                preview.feed(piece[1])
    splitter.flush()
    return preview.finish()
best = min(timeit.repeat(preview_end_to_end, number=100, repeat=5)) / 100
print(f"{'PatchPreview end to end (splitter, reader, apply, finish+validate)':55s} {best*1e6:9.1f} µs per run   {best*1e6/3:8.1f} µs per op")
