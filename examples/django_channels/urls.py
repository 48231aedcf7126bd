"""HTTP routes: none; HTTP is plain Django and ws_diag is not involved."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
