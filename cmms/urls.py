from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from cmms import metrics, ml_api, views
from notifications import sms_webhooks, whatsapp_webhook
from notifications.telegram_webhook import telegram_webhook

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/ml/predictions/", ml_api.predictions, name="ml-predictions"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("dashboard/", views.dashboard_view, name="dashboard"),
    path("accounts/home/", views.after_login, name="after-login"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("sms/twilio/status/", sms_webhooks.status_callback, name="sms-twilio-status"),
    path("sms/twilio/inbound/", sms_webhooks.inbound_message, name="sms-twilio-inbound"),
    path("whatsapp/webhook/", whatsapp_webhook.webhook, name="whatsapp-webhook"),
    path("telegram/webhook/", telegram_webhook, name="telegram-webhook"),
    path("notifications/", include("notifications.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("inbox/", include("notifications.inbox_urls")),
]
