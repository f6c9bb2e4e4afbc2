"""The API's routers, one module per resource; ``hub.api.app`` includes them in order."""
