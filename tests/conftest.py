"""Session fixtures: real registries, dockerd, buildah and upstream bases (see tests/fixtures)."""

pytest_plugins = ["tests.fixtures.builders", "tests.fixtures.registry", "tests.fixtures.verifiers"]
