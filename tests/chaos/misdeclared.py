"""A chaos module that declares a healthy order as poison: the verifier must report it."""

from examples.chaos_orders import ChaosOrder, chaos_flows

__all__ = ["ChaosOrder", "chaos_flows", "chaos_poison"]


def chaos_poison(flows: list) -> list:
    """The first order, which completes: declared poison by mistake."""
    return flows[:1]
