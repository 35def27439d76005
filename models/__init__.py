"""The system of record: SQLAlchemy models, engine and session handling, queries.

Empty until the job store lands; it stands here so the layout shows the architecture.
"""
