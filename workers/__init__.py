"""Celery workers: the app, one task per pipeline stage, the reconciler, webhook delivery.

Empty until the pipeline lands; it stands here so the layout shows the architecture.
"""
