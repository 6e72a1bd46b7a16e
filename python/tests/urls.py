from django.urls import path

from dukasync.django.views import sync_token

urlpatterns = [path("dukasync/token", sync_token)]
