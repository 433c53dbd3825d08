"""Market data: ticker, candles and tape folded from TRADES, served on `marketdata.*` and the live `md.*` feeds."""
