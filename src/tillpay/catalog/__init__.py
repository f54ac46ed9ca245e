"""Catalog: products, variants and their stock."""
