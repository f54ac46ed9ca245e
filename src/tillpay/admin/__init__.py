"""Administrator HTTP views over records that other domains own (the audit trail).

They sit above ``accounts`` (they need its authentication dependencies), so the domains
they read never import ``accounts`` back.
"""
