"""A minimal Django project with one Channels consumer per failure (no database, no templates)."""
