"""Settings of a minimal Django 4.2 site that runbook-bot's tests rotate keys on.

Secrets come from the .env file named by DJANGO_ENV_FILE, read with the same
quoting rules as the bot's env-file secret store, so a restart picks up what
the bot wrote. The database path comes from DJANGO_DATABASE_PATH.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .envfile import EnvSyntaxError, read_env_file


def _required_environ(name):
    value = os.environ.get(name, "")
    if value == "":
        raise ImproperlyConfigured(f"{name} is not set; set it to the path of the file to use")
    return value


_env_path = _required_environ("DJANGO_ENV_FILE")
try:
    _env = read_env_file(_env_path)
except (OSError, EnvSyntaxError) as error:
    raise ImproperlyConfigured(f"cannot read DJANGO_ENV_FILE {_env_path}: {error}") from error

SECRET_KEY = _env.get("DJANGO_SECRET_KEY", "")
if SECRET_KEY == "":
    raise ImproperlyConfigured(f"DJANGO_SECRET_KEY is missing or empty in {_env_path}")

# Comma-separated, newest first, as Django expects SECRET_KEY_FALLBACKS.
SECRET_KEY_FALLBACKS = [
    key.strip() for key in _env.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if key.strip()
]

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "testsite.urls"
BASE_DIR = Path(__file__).resolve().parent.parent

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _required_environ("DJANGO_DATABASE_PATH"),
    }
}

SESSION_ENGINE = "django.contrib.sessions.backends.db"

# A fast hasher keeps test logins quick. Never use it for a real site.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Print the "Session data corrupted" warning that a session signed with an
# unknown key causes, so a test's server log shows why a user was logged out.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.security.SuspiciousSession": {"handlers": ["console"], "level": "WARNING"},
    },
}
