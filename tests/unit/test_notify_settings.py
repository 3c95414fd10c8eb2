"""The notify function's configuration: what it needs from the environment, per transport."""

from __future__ import annotations

import pytest
from birthnotify.shared.settings import DEFAULT_NOTIFY_BASE_URL, NOTIFY_ENV, Env, NotifySettings

SES = {
    Env.REGISTRY_PATH: "/r.toml",
    Env.REPORTS_BUCKET: "reports",
    Env.STATE_TABLE: "state",
    Env.EMAIL_TRANSPORT: "ses",
    Env.EMAIL_SENDER: "bn@example.nhs.uk",
    Env.SES_CONFIGURATION_SET: "tls",
    Env.SES_TEMPLATE: "bn-prod-email",
    Env.CONSUMER_GUIDE_URL: "https://example.nhs.uk/guide",
    Env.STAGE: "prod",
}
NOTIFY = {
    **SES,
    Env.EMAIL_TRANSPORT: "notify",
    Env.SES_CONFIGURATION_SET: "",
    Env.SES_TEMPLATE: "",
    Env.NOTIFY_API_KEY_SECRET_ID: "arn:aws:secretsmanager:eu-west-2:1:secret:k",
    Env.NOTIFY_TEMPLATE_ID: "f33517ff-2a88-4f6e-b855-c550268ce08a",
}


def env(values: dict) -> dict[str, str]:
    return {str(name): value for name, value in values.items()}


def test_every_variable_read_is_one_the_stack_is_told_to_set():
    assert set(SES) | set(NOTIFY) <= NOTIFY_ENV | {Env.NOTIFY_BASE_URL}
    assert Env.NOTIFY_BASE_URL in NOTIFY_ENV


def test_ses_settings():
    settings = NotifySettings.from_env(env(SES))
    assert (settings.email_transport, settings.ses_configuration_set, settings.stage) == ("ses", "tls", "prod")
    assert settings.ses_template == "bn-prod-email"
    assert settings.notify_base_url == DEFAULT_NOTIFY_BASE_URL


def test_notify_settings_point_at_the_given_base_url():
    settings = NotifySettings.from_env(env({**NOTIFY, Env.NOTIFY_BASE_URL: "http://127.0.0.1:9999"}))
    assert (settings.email_transport, settings.notify_base_url) == ("notify", "http://127.0.0.1:9999")


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({**SES, Env.SES_CONFIGURATION_SET: ""}, "SES_CONFIGURATION_SET"),
        ({**SES, Env.SES_TEMPLATE: ""}, "SES_TEMPLATE"),
        ({**SES, Env.CONSUMER_GUIDE_URL: ""}, "CONSUMER_GUIDE_URL"),
        ({**NOTIFY, Env.NOTIFY_API_KEY_SECRET_ID: ""}, "NOTIFY_API_KEY_SECRET_ID"),
        ({**NOTIFY, Env.NOTIFY_TEMPLATE_ID: ""}, "NOTIFY_TEMPLATE_ID"),
    ],
)
def test_a_missing_variable_is_named(values, missing):
    with pytest.raises(RuntimeError, match=missing):
        NotifySettings.from_env(env(values))


def test_an_unknown_transport_is_refused():
    with pytest.raises(RuntimeError, match="ses or notify"):
        NotifySettings.from_env(env({**SES, Env.EMAIL_TRANSPORT: "smtp"}))
