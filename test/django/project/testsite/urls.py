from django.urls import path

from . import views

urlpatterns = [
    path("login/", views.login_view),
    path("whoami/", views.whoami_view),
    path("healthz/", views.health_view),
]
