"""The report web page: the agency console and the client report."""

from apps.web.app import create_app, serve

__all__ = ["create_app", "serve"]
