"""The operator console: server-rendered pages at /ui, served by the API process.

``app.mount_console`` adds it to the API's application; ``auth`` signs in (API token: admin,
HUB_VIEWER_TOKEN: read-only viewer); ``rendering`` renders templates; ``forms`` turns posted
forms into the API's pydantic models and their errors into inline messages; ``routes`` holds
one module per page. Every asset is vendored under ``static/``: no CDN, no other host.
"""

from hub.console.app import mount_console

__all__ = ["mount_console"]
