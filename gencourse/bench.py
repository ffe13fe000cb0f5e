"""Headline figures: lessons report what they measure, ``make bench`` collects it into one table.

``headline(name, value)`` returns ``value`` unchanged, so it wraps a computation in place. When the
environment variable ``GENCOURSE_HEADLINES`` names a file, each figure is appended to it as a JSON line.
"""
import json
import os


def headline(name: str, value, fmt: str = "{:.3g}"):
    """Record a lesson's headline figure (e.g. ``headline("test NLL (nats)", nll)``) and return it."""
    if not isinstance(name, str) or not name:
        raise ValueError("headline needs a non-empty name, e.g. headline('test NLL (nats)', 84.2)")
    number = float(value)
    path = os.environ.get("GENCOURSE_HEADLINES")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"name": name, "value": number, "text": fmt.format(number)}) + "\n")
    return value
