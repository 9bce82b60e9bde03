"""A small stock-keeping app on SQLite: items, a stock report and an audit log."""
