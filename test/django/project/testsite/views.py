"""JSON views that the tests use to log in and to check who is logged in."""

import hashlib
import json

from django.conf import settings
from django.contrib.auth import authenticate, login
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST


@csrf_exempt
@require_POST
def login_view(request):
    """Log in with a JSON or form body of username and password."""
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "body is not valid JSON"}, status=400)
    else:
        body = request.POST

    user = authenticate(
        request, username=body.get("username", ""), password=body.get("password", "")
    )
    if user is None:
        return JsonResponse({"error": "invalid username or password, or inactive account"}, status=401)

    login(request, user)
    return JsonResponse({"user": user.get_username()})


@require_GET
def whoami_view(request):
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    return JsonResponse({"user": request.user.get_username()})


@require_GET
def health_view(request):
    """Report health and the fingerprints of the keys this process loaded."""
    return JsonResponse(
        {
            "status": "ok",
            "secret_key_fingerprint": _fingerprint(settings.SECRET_KEY),
            "fallback_fingerprints": [_fingerprint(key) for key in settings.SECRET_KEY_FALLBACKS],
        }
    )


def _fingerprint(secret):
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]
