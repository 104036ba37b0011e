"""Create the test accounts. Run with: manage.py shell -c "import create_users"."""

from django.contrib.auth.models import User

ACCOUNTS = [
    ("alice", "alice@example.com", True),
    ("bob", "Bob.Builder@Example.com", True),
    ("carol", "carol@example.com", False),
    ("dave", "shared@example.com", True),
    ("erin", "SHARED@example.com", True),
]

for username, email, is_active in ACCOUNTS:
    User.objects.create_user(username, email, f"{username}-password", is_active=is_active)
