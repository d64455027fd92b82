"""Trade history (TAAD): Flex imports, lifecycles, promotion and enrichment as Dagster assets,
a Flex inbox sensor and a daily Flex Web Service schedule."""
