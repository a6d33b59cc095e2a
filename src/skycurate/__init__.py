"""skycurate: curation pipelines that publish versioned Parquet datasets."""

__version__ = "0.1.0"
