"""Settings: defaults in one place, then RACKMESH_* variables, then explicit overrides."""

import pytest

from rackmesh.config import Settings


def test_environment_overrides_defaults_and_explicit_values_override_the_environment():
    environ = {"RACKMESH_ZK_HOSTS": "zk:2181", "RACKMESH_ZK_SESSION_TIMEOUT": "4.5", "RACKMESH_AGENT_PORT": "9000"}
    settings = Settings.from_env(environ, agent_port=9100)
    assert settings.zk_hosts == "zk:2181"
    assert settings.zk_session_timeout == 4.5
    assert settings.agent_port == 9100
    assert settings.rack_label == "topology.rackmesh.io/rack"


def test_settings_survive_the_trip_through_a_child_environment():
    settings = Settings.from_env({}, zk_hosts="a:1,b:2", cert_lifetime=60.0, operator_peering="")
    assert Settings.from_env(settings.to_env()) == settings


def test_a_malformed_variable_names_itself():
    with pytest.raises(ValueError, match="RACKMESH_AGENT_PORT='http' is not a valid int"):
        Settings.from_env({"RACKMESH_AGENT_PORT": "http"})
