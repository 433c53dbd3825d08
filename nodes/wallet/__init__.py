"""The wallet node: event-sourced balances in SQLite, relayed to the WALLET stream."""
