"""Double-entry ledger: accounts, balanced transactions, immutable entries."""
