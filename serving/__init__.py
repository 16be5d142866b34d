"""The online endpoint's web front end: FastAPI routes over ``leanops.serving`` (which holds the logic),
and the Prefect event subscription that tells it an alias moved. Start it with ``leanops serve``."""
