"""The WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py wsgi:app``.

``create_app`` opens no connection (it never queries at start-up), so gunicorn may load
this once in its master (``preload_app``) and fork workers from it; ``gunicorn.conf.py``
drops any pooled connection in each worker after the fork all the same.
"""

from recova.platform.entry.app import create_app

app = create_app()
