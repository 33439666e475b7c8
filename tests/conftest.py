pytest_plugins = ["tests.fixtures_db", "tests.fixtures_synapse", "tests.bot_harness"]
