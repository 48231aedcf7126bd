"""Runnable recipes: ws_diag under raw ASGI, Starlette, FastAPI, Django Channels and Quart (see README.md)."""
