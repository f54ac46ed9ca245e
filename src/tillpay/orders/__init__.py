"""Orders: snapshots of a checkout, an explicit state machine, and their history."""
