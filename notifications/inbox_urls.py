from django.urls import path

from . import inbox_views as views

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
    path("<int:pk>/read/", views.mark_read, name="inbox-read"),
    path("read-all/", views.mark_all_read, name="inbox-read-all"),
    path("api/since/", views.since, name="inbox-since"),
]
