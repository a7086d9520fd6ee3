#!/usr/bin/env python3
"""Compares two `cargo xtask reproduce` (or study) folders: every file byte for byte,
and where the bytes differ, once more without what is allowed to differ between two runs
of the same code: wall-clock fields (`seconds`, `images_per_s`), the run folder's own
path (runs into two folders name them), and in safetensors files the order of the JSON
header's keys. Prints the files that still differ.

    python3 tools/compare_runs.py RUN_A RUN_B

Used for issue 12 (a refactor must leave the demo's outputs as they were): see
BENCHMARKS.md, "`cargo xtask reproduce` (demo preset)". Markdown and CSV tables hold
per-result times in their last column and report.md the step times, so they are listed
when only those differ: read their diff.
"""
import json
import os
import struct
import sys

TIMING = {"seconds", "images_per_s"}


def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in TIMING}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


ROOTS = []


def read(path):
    """The file's bytes with its run folder's absolute path replaced by `RUN`."""
    b = open(path, "rb").read()
    for root in ROOTS:
        b = b.replace(root.encode(), b"RUN")
    return b


def safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    text = b[8 : 8 + n].decode()
    for root in ROOTS:
        text = text.replace(root, "RUN")
    header = json.loads(text)
    meta = header.get("__metadata__", {})
    for k, v in meta.items():
        try:
            meta[k] = strip(json.loads(v))
        except ValueError:
            pass
    return header, b[8 + n :]


def same_without_timings(a, b):
    name = os.path.basename(a)
    ba, bb = read(a), read(b)
    if ba == bb:
        return True
    try:
        if name.endswith(".safetensors"):
            return safetensors(a) == safetensors(b)
        if name.endswith(".jsonl"):
            return [strip(json.loads(l)) for l in ba.decode().splitlines()] == [
                strip(json.loads(l)) for l in bb.decode().splitlines()
            ]
        if name.endswith(".json"):
            return strip(json.loads(ba)) == strip(json.loads(bb))
    except (ValueError, UnicodeDecodeError):
        return False
    return False


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a_root, b_root = sys.argv[1:]
    ROOTS.extend(sorted({os.path.abspath(a_root), os.path.abspath(b_root)}, key=len, reverse=True))
    identical, equal, differ = 0, 0, []
    for root, _, files in os.walk(a_root):
        for f in sorted(files):
            a = os.path.join(root, f)
            rel = os.path.relpath(a, a_root)
            b = os.path.join(b_root, rel)
            if not os.path.exists(b):
                differ.append(rel + " (only in the first)")
            elif open(a, "rb").read() == open(b, "rb").read():
                identical += 1
            elif same_without_timings(a, b):
                equal += 1
            else:
                differ.append(rel)
    print(f"byte-identical: {identical}, equal but for timings or header order: {equal}, differ: {len(differ)}")
    for d in differ:
        print("  " + d)


if __name__ == "__main__":
    main()
