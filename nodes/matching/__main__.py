"""`python -m nodes.matching`: the matching engine (owner, or hot standby while another owns)."""

from nodes.matching.node import serve
from nodes.runtime.config import NodeConfig
from nodes.runtime.lifecycle import run_node


def main() -> None:
    """Entry point used by `qt up` and by hand."""
    config = NodeConfig.from_env("matching")
    run_node("matching", lambda stop: serve(config, stop))


if __name__ == "__main__":
    main()
