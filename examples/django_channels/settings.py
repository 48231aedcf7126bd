"""Django settings for the Channels example: no database, no templates, no auth."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "examples-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "examples.django_channels.urls"
ASGI_APPLICATION = "examples.django_channels.asgi.application"
USE_TZ = True
