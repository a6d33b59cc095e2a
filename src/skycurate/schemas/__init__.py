"""Arrow schemas of published datasets and pydantic config models of flows."""
