# Django settings for the SPID/CIE OIDC test peer (TA + OP in one process).
# Port and work dir come from env vars set by peer.py.
import os

import aiohttp

PORT = int(os.environ["SPID_PEER_PORT"])
WORKDIR = os.environ["SPID_PEER_WORKDIR"]
BASE = f"http://127.0.0.1:{PORT}"

# Entity ids: the TA ends with "/", the OP must not (its discovery 404s otherwise).
TA_ID = f"{BASE}/"
OP_ID = f"{BASE}/oidc/op"

SECRET_KEY = "spid-peer-test-only"
DEBUG = True
ALLOWED_HOSTS = ["*"]
APPEND_SLASH = False
ROOT_URLCONF = "urls"
AUTH_USER_MODEL = "spid_cie_oidc_accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "spid_cie_oidc.accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "bootstrap_italia_template",  # base templates of the OP pages
    "spid_cie_oidc.entity",
    "spid_cie_oidc.authority",
    "spid_cie_oidc.provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

# Fresh sqlite per run (trust chains are cached in the DB).
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.path.join(WORKDIR, "peer.sqlite3"),
    "OPTIONS": {"timeout": 30},
}}

# Cookies ignore ports: keep clear of the gateway's own cookie names.
SESSION_COOKIE_NAME = "op_sessionid"
CSRF_COOKIE_NAME = "op_csrftoken"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
LOGIN_URL = "/oidc/op/authorization"

# Federation / OP settings read by spid_cie_oidc.
OIDCFED_DEFAULT_TRUST_ANCHOR = TA_ID
OIDCFED_TRUST_ANCHORS = [TA_ID]
OIDCFED_REQUIRED_TRUST_MARKS = []
OIDCFED_PROVIDER_PROFILE = "spid"
OIDCFED_PROVIDER_MAX_REFRESH = 10
DEFAULT_JWE_ALG = "RSA-OAEP"
DEFAULT_JWE_ENC = "A256CBC-HS512"
# TLS is not verified so RPs may use self-signed https entity ids.
HTTPC_PARAMS = {
    "connection": {"ssl": False},
    "session": {"timeout": aiohttp.ClientTimeout(total=8)},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"err": {"class": "logging.StreamHandler"}},  # stderr
    "root": {"handlers": ["err"], "level": "WARNING"},
    "loggers": {
        "spid_cie_oidc": {"handlers": ["err"], "level": "INFO", "propagate": False},
    },
}


class _NoMigrations(dict):
    """Every app 'has no migrations': migrate --run-syncdb builds the tables
    straight from the models (~0.1 s instead of ~1.2 s for ~60 migrations)."""

    def __contains__(self, label):
        return True

    def __getitem__(self, label):
        return None


MIGRATION_MODULES = _NoMigrations()
