"""`python -m nodes.clearing`: the saga orchestrator (any number of instances, one queue group)."""

from nodes.clearing.node import serve
from nodes.runtime.config import NodeConfig
from nodes.runtime.lifecycle import run_node


def main() -> None:
    """Entry point used by `qt up` and by hand."""
    config = NodeConfig.from_env("clearing")
    run_node("clearing", lambda stop: serve(config, stop))


if __name__ == "__main__":
    main()
