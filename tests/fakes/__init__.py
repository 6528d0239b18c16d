"""Fakes of the services Rhetor talks to, for tests and benchmarks.

`FakeUpstream` (tests/fakes/upstream.py) is a local HTTP server that speaks the OpenAI,
Anthropic and Ollama wire formats, records what it receives and fails on demand;
`python -m tests.fakes.upstream --port 8400` runs it standalone. The names below are
imported lazily, so that `-m` run does not import the module twice.
"""

from typing import Any

__all__ = ["FakeUpstream", "Fault", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tests.fakes import upstream

        return getattr(upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
