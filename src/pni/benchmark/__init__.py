"""A versioned honest benchmark for randomized (and deterministic) defenses.

``benchmark`` judges any model under ``pni-honest-v1`` (``protocol.PROTOCOLS``) and returns
its card; ``write_card`` / ``read_card`` keep it (validated against ``card.SCHEMA``,
documented in ``docs/BENCHMARK.md``); ``leaderboard_markdown`` renders several cards side
by side, sorted by the honest worst case.
"""
from .card import SCHEMA, read_card, validate_card, write_card
from .leaderboard import leaderboard_markdown
from .protocol import BUDGETS, PNI_HONEST_V1, PROTOCOLS, BenchmarkError, Protocol, get_protocol
from .run import benchmark, benchmark_checkpoint

__all__ = ["BUDGETS", "BenchmarkError", "PNI_HONEST_V1", "PROTOCOLS", "Protocol", "SCHEMA", "benchmark",
           "benchmark_checkpoint", "get_protocol", "leaderboard_markdown", "read_card", "validate_card",
           "write_card"]
