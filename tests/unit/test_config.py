"""load_settings: every bad or missing variable is named in the error; the defaults are what the docs say."""

from __future__ import annotations

import pytest

from bridge.config import (
    DEFAULT_RECORDING_URL_TEMPLATE,
    AgentLookup,
    CallerLookup,
    Settings,
    load_settings,
)
from bridge.errors import ConfigurationError, PermanentError

pytestmark = pytest.mark.unit

REQUIRED = {
    "SERVICENOW_URL": "https://example.service-now.com",
    "SERVICENOW_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:servicenow-AbCdEf",
    "CONTACT_TABLE": "voicebridge-contacts",
    "PARKING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/voicebridge-parking",
    "CONNECT_INSTANCE_ALIAS": "example",  # the default recording template uses {instance_alias}
}


def settings(**overrides: str) -> Settings:
    environ = {**REQUIRED, **overrides}
    return load_settings({name: value for name, value in environ.items() if value is not None})


def error_for(**overrides: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        settings(**overrides)
    assert isinstance(caught.value, PermanentError)
    return str(caught.value)


def without(name: str) -> dict[str, str]:
    return {key: value for key, value in REQUIRED.items() if key != name}


# --- required variables --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SERVICENOW_URL", "SERVICENOW_SECRET_ARN", "CONTACT_TABLE", "PARKING_QUEUE_URL"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_required_variable_is_named(name: str, value: str | None) -> None:
    environ = without(name)
    if value is not None:
        environ[name] = value
    with pytest.raises(ConfigurationError, match=f"^{name} is not set$"):
        load_settings(environ)


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    assert load_settings().contact_table == "voicebridge-contacts"


def test_os_environ_without_variables_names_the_first_missing_one() -> None:
    # The autouse fixture cleared every bridge variable.
    with pytest.raises(ConfigurationError, match="SERVICENOW_URL"):
        load_settings()


# --- SERVICENOW_URL ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.service-now.com",
        "http://10.0.0.5:8080",
        "http://localhost.example.com",
        "ftp://example.service-now.com",
        "example.service-now.com",
    ],
)
def test_plain_http_or_other_schemes_are_rejected_off_loopback(url: str) -> None:
    message = error_for(SERVICENOW_URL=url)
    assert message.startswith("SERVICENOW_URL must be an https:// URL")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:9000", "http://[::1]:8080", "http://127.0.0.1:8080/"]
)
def test_plain_http_is_accepted_on_loopback_for_the_emulator(url: str) -> None:
    loaded = settings(SERVICENOW_URL=url)
    assert loaded.servicenow_url == url.rstrip("/")
    assert loaded.api_base == f"{url.rstrip('/')}/api/now/v1/cs/voice-interactions"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.service-now.com/api/now",
        "https://example.service-now.com/api/now/v1/cs/voice-interactions",
        "https://example.service-now.com?sysparm_x=1",
        "https://example.service-now.com?",
        "https://example.service-now.com#top",
    ],
)
def test_url_with_a_path_query_or_fragment_is_rejected(url: str) -> None:
    message = error_for(SERVICENOW_URL=url)
    assert message.startswith("SERVICENOW_URL must be the instance root")


@pytest.mark.parametrize("url", ["https://", "https:", "https://:443", "https://example.service-now.com:port"])
def test_url_without_a_usable_host_is_rejected(url: str) -> None:
    assert error_for(SERVICENOW_URL=url).startswith("SERVICENOW_URL must name a host")


def test_trailing_slash_is_dropped() -> None:
    loaded = settings(SERVICENOW_URL="https://example.service-now.com/")
    assert loaded.servicenow_url == "https://example.service-now.com"


# --- numbers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["eight", "8.0", "0", "65", "-1"])
def test_bad_max_workers_is_named(value: str) -> None:
    assert error_for(MAX_WORKERS=value).startswith("MAX_WORKERS must be")


@pytest.mark.parametrize("value", ["1", "64", " 16 "])
def test_max_workers_within_bounds(value: str) -> None:
    assert settings(MAX_WORKERS=value).max_workers == int(value)


@pytest.mark.parametrize("value", ["week", "0", "366"])
def test_bad_contact_ttl_days_is_named(value: str) -> None:
    assert error_for(CONTACT_TTL_DAYS=value).startswith("CONTACT_TTL_DAYS must be")


@pytest.mark.parametrize("name", ["SERVICENOW_CONNECT_TIMEOUT", "SERVICENOW_READ_TIMEOUT"])
@pytest.mark.parametrize("value", ["soon", "0", "-2", "301", "nan", "inf"])
def test_bad_timeouts_are_named(name: str, value: str) -> None:
    assert error_for(**{name: value}).startswith(f"{name} must be")


def test_timeouts_are_read() -> None:
    loaded = settings(SERVICENOW_CONNECT_TIMEOUT="1.5", SERVICENOW_READ_TIMEOUT="20")
    assert (loaded.connect_timeout_s, loaded.read_timeout_s) == (1.5, 20.0)


# --- booleans and choices --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["FORWARD_NOTES", "VOICEBRIDGE_XRAY_SDK"])
@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "tru"])
def test_bad_booleans_are_named(name: str, value: str) -> None:
    message = error_for(**{name: value})
    assert message.startswith(f"{name} must be true or false")
    assert repr(value) in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), (" on ", True)]
    + [("false", False), ("False", False), ("0", False), ("no", False), ("off", False)],
)
def test_boolean_words(value: str, expected: bool) -> None:
    assert settings(FORWARD_NOTES=value).forward_notes is expected
    assert settings(VOICEBRIDGE_XRAY_SDK=value).xray_sdk is expected


def test_unknown_caller_lookup_lists_the_allowed_values() -> None:
    message = error_for(CALLER_LOOKUP="phonebook")
    assert message.startswith("CALLER_LOOKUP must be one of describe_contact, attribute, none")
    assert "'phonebook'" in message


def test_unknown_agent_lookup_is_named() -> None:
    assert error_for(AGENT_LOOKUP="ldap").startswith("AGENT_LOOKUP must be one of describe_user, none")


def test_choices_are_case_insensitive() -> None:
    loaded = settings(CALLER_LOOKUP="Attribute", AGENT_LOOKUP="NONE")
    assert loaded.caller_lookup is CallerLookup.ATTRIBUTE
    assert loaded.agent_lookup is AgentLookup.NONE


# --- recording URL template and alias --------------------------------------------------------------------------


def test_recording_template_with_an_unknown_field_is_named() -> None:
    message = error_for(RECORDING_URL_TEMPLATE="https://r.example.com/{contact_id}/{agent_name}")
    assert message.startswith("RECORDING_URL_TEMPLATE uses unknown fields ['agent_name']")
    assert "{contact_id}" in message  # the allowed fields are listed


@pytest.mark.parametrize("template", ["https://r.example.com/{contact_id", "https://r.example.com/}"])
def test_malformed_recording_template_is_named(template: str) -> None:
    assert error_for(RECORDING_URL_TEMPLATE=template).startswith("RECORDING_URL_TEMPLATE is not a valid template")


def test_template_using_instance_alias_needs_the_alias() -> None:
    environ = without("CONNECT_INSTANCE_ALIAS")
    environ["RECORDING_URL_TEMPLATE"] = "https://{instance_alias}.my.connect.aws/x/{contact_id}"
    with pytest.raises(ConfigurationError, match="^CONNECT_INSTANCE_ALIAS is not set"):
        load_settings(environ)


def test_default_template_uses_instance_alias_so_the_alias_is_required_with_it() -> None:
    with pytest.raises(ConfigurationError, match="CONNECT_INSTANCE_ALIAS"):
        load_settings(without("CONNECT_INSTANCE_ALIAS"))


def test_template_without_instance_alias_needs_no_alias() -> None:
    environ = without("CONNECT_INSTANCE_ALIAS")
    environ["RECORDING_URL_TEMPLATE"] = "https://recordings.example.com/{region}/{instance_id}/{contact_id}"
    loaded = load_settings(environ)
    assert loaded.recording_url_template == environ["RECORDING_URL_TEMPLATE"]
    assert loaded.connect_instance_alias == ""


@pytest.mark.parametrize("alias", ["-leading-dash", "has space", "under_score", "a" * 64])
def test_invalid_instance_alias_is_named(alias: str) -> None:
    assert error_for(CONNECT_INSTANCE_ALIAS=alias).startswith("CONNECT_INSTANCE_ALIAS is not a valid")


# --- defaults -----------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    loaded = settings()
    assert loaded == Settings(
        servicenow_url="https://example.service-now.com",
        servicenow_secret_arn=REQUIRED["SERVICENOW_SECRET_ARN"],
        contact_table="voicebridge-contacts",
        parking_queue_url=REQUIRED["PARKING_QUEUE_URL"],
        recording_url_template=DEFAULT_RECORDING_URL_TEMPLATE,
        connect_instance_alias="example",
        caller_lookup=CallerLookup.DESCRIBE_CONTACT,
        caller_attribute="CallerNumber",
        fallback_user_id="anonymous",
        agent_lookup=AgentLookup.DESCRIBE_USER,
        inbound_id="",
        forward_notes=True,
        max_workers=64,
        contact_ttl_days=7,
        connect_timeout_s=3.05,
        read_timeout_s=10.0,
        region="us-east-1",
        xray_sdk=False,
    )


def test_blank_optional_values_fall_back_to_their_defaults() -> None:
    loaded = settings(
        CALLER_LOOKUP=" ", CALLER_ATTRIBUTE=" ", FALLBACK_USER_ID="", MAX_WORKERS="", SERVICENOW_READ_TIMEOUT=""
    )
    assert loaded.caller_lookup is CallerLookup.DESCRIBE_CONTACT
    assert (loaded.caller_attribute, loaded.fallback_user_id) == ("CallerNumber", "anonymous")
    assert (loaded.max_workers, loaded.read_timeout_s) == (64, 10.0)


def test_region_prefers_aws_region_then_default_region() -> None:
    assert settings(AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="us-west-2").region == "eu-west-1"
    assert settings(AWS_DEFAULT_REGION="us-west-2").region == "us-west-2"


def test_values_are_stripped() -> None:
    loaded = settings(CONTACT_TABLE="  contacts  ", INBOUND_ID=" +18005550100 ", CALLER_ATTRIBUTE=" Ani ")
    assert (loaded.contact_table, loaded.inbound_id, loaded.caller_attribute) == ("contacts", "+18005550100", "Ani")


def test_settings_object_is_frozen() -> None:
    loaded = settings()
    with pytest.raises(AttributeError):
        loaded.max_workers = 2  # type: ignore[misc]
