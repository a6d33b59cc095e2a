"""SkyPile-style web corpus stages: extraction, language ID, quality signals, safety,
distribution (boilerplate) filtering, exact and near-duplicate removal, quality classifier."""
