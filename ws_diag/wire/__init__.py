"""What goes on the wire: close codes (RFC 6455), code schemes and the JSON diagnostic frame."""
