"""The client of NemoVideo's agent API (nemo-api.md): typed calls, errors, SSE events.

It knows nothing of Celery, Flask or the database.
"""
