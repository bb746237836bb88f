"""okaflow package."""
