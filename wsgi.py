"""The WSGI entry point for gunicorn: ``gunicorn wsgi:app``."""

from recova.platform.app import create_app

app = create_app()
