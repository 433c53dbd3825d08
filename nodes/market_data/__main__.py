"""`python -m nodes.market_data`: ticker, candles, tape and live feeds from TRADES (any number of instances)."""

from nodes.market_data.node import serve
from nodes.runtime.config import NodeConfig
from nodes.runtime.lifecycle import run_node


def main() -> None:
    """Entry point used by `qt up` and by hand."""
    config = NodeConfig.from_env("market_data")
    run_node("market_data", lambda stop: serve(config, stop))


if __name__ == "__main__":
    main()
