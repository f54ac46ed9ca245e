"""Imports every module that registers worker jobs."""

from tillpay.orders import jobs as orders_jobs

__all__ = ["orders_jobs"]
