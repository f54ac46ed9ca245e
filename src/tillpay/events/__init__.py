"""The transactional outbox of domain events."""
