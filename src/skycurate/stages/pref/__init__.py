"""Preference-pair stages: public preference sets mapped to one canonical pair layout."""
