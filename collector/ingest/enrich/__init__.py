"""Enrichment of accepted messages: client IP, geo location, user agent, timestamps."""
