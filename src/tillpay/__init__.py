"""tillpay: a self-hostable, security-first e-commerce payments backend."""

__version__ = "0.1.0"
