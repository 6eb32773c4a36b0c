from django.urls import path

from . import views

urlpatterns = [
    path("email/unsubscribe/<str:token>/", views.email_unsubscribe, name="email-unsubscribe"),
]
