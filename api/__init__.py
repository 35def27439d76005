"""The public REST API: the Flask app factory, blueprints, schemas, auth and errors.

Empty until the job store and API land; it stands here so the layout shows the
architecture from the first commit.
"""
