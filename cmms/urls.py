from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from cmms import ml_api

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/ml/predictions/", ml_api.predictions, name="ml-predictions"),
]
