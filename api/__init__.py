"""The public REST API: the Flask app factory, blueprints, schemas, auth and errors.

- ``api.app``: ``create_app(settings)``, the factory gunicorn serves
- ``api.jobs``, ``api.batches``, ``api.webhooks``, ``api.system``: the endpoints
  (flask-smorest blueprints)
- ``api.schemas``: marshmallow input and output schemas, every validation rule
- ``api.errors``: the one error shape and its stable codes
- ``api.context``: the request's session and the caller's tenant (API-key auth)
- ``api.idempotency``: the ``Idempotency-Key`` header
- ``api.events``: the event log as JSON and as Server-Sent Events
- ``api.commands``: ``reelyard api``, ``migrate``, ``tenants``, ``keys``

``docs/api.md`` is the guide.
"""
