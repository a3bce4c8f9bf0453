"""Audiences and computed traits: who is in which group, kept current as events arrive and on time alone."""
