"""`python -m nodes.wallet`: run one wallet partition."""

from nodes.runtime.config import NodeConfig
from nodes.runtime.lifecycle import run_node
from nodes.wallet.node import serve


def main() -> None:
    """Entry point used by `qt up` and by hand."""
    config = NodeConfig.from_env("wallet")
    run_node("wallet", lambda stop: serve(config, stop))


if __name__ == "__main__":
    main()
