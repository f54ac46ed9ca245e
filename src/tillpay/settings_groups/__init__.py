"""The settings of :class:`tillpay.settings.Settings`, one mixin class per concern.

Each module holds the fields (with their descriptions, defaults and bounds), the
validators and the derived values of one concern. ``Settings`` inherits them all, so
every field stays a top-level attribute (``settings.database_url``) read from its
``TILLPAY_<NAME>`` variable. Checks that weigh several concerns against each other (the
production refusals) stay in :mod:`tillpay.settings`.
"""
