from tests.models.db_fixtures import db_connection, db_session, engine, job, session_factory

__all__ = ["db_connection", "db_session", "engine", "job", "session_factory"]
