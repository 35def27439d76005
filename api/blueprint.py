"""flask-smorest, typed at the edges and configured the house way.

flask-smorest ships no type information; these subclasses give its decorators
signatures that keep the views typed under ``mypy --strict``. The arguments parser
rejects unknown query parameters as well as unknown body fields (flask-smorest's
default excludes unknown query parameters silently).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import marshmallow as ma
from flask import Flask
from flask_smorest import Api as _Api  # type: ignore[import-untyped]
from flask_smorest import Blueprint as _Blueprint
from webargs.flaskparser import FlaskParser

from api.errors import handle_http_exception
from api.schemas import ErrorOut

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Parser(FlaskParser):
    DEFAULT_UNKNOWN_BY_LOCATION = {  # noqa: RUF012 (webargs reads this class attribute)
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }


class Blueprint(_Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = Parser()

    @staticmethod
    def error_schema() -> type[ma.Schema]:
        return ErrorOut

    def route(self, rule: str, **options: Any) -> Callable[[T], T]:
        decorator: Callable[[T], T] = super().route(rule, **options)
        return decorator

    def arguments(self, schema: type[ma.Schema] | ma.Schema, **kwargs: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().arguments(schema, **kwargs)
        return decorator

    def response(
        self, status_code: int, schema: type[ma.Schema] | ma.Schema | None = None, **kwargs: Any
    ) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().response(status_code, schema, **kwargs)
        return decorator

    def alt_response(self, status_code: int, **kwargs: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().alt_response(status_code, **kwargs)
        return decorator

    def doc(self, **kwargs: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().doc(**kwargs)
        return decorator


class Api(_Api):  # type: ignore[misc]
    """flask-smorest's Api, documenting and answering errors in the house shape."""

    ERROR_SCHEMA = ErrorOut

    def __init__(self, app: Flask, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)

    def handle_http_exception(self, error: Any) -> Any:
        return handle_http_exception(error)

    def register_blueprint(self, blueprint: Blueprint, **options: Any) -> None:
        super().register_blueprint(blueprint, **options)
